"""Tokenizers: exact round trips (English + Chinese) for every kind, BPE without unknowns, special ids, files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmlab.data import train_tokenizer
from llmlab.tokenizers import TOKENIZER_KINDS, load_tokenizer, train_tokenizer_from_iterator

EN = (
    "It was the best of times, it was the worst of times; it was the age of wisdom.\n"
    "  Indented line with  two spaces,\ttabs\tand trailing space \n\n"
    "Numbers 3.14 and 2024, symbols #tag ## @user, quotes 'single' \"double\" -- dashes.\n"
)
ZH = (
    "我们今天去北京大学看书。你好，世界！机器学习很有趣。\n"
    "第二行：中文测试，包括标点符号和数字123。\n\n空行之后的段落。"
)
CORPUS = [EN, ZH, "The quick brown fox jumps over the lazy dog. " * 3, "天下大势，分久必合，合久必分。" * 2] * 20
SAMPLES = [
    EN,
    ZH,
    "mixed 中文 and the times,\n\n  with  spaces ",
    " leading space",
    "\n\nleading newlines",
    "trailing newline\n",
    "a  b   c",
    "",
]


@pytest.fixture(scope="module")
def trained() -> dict:
    return {kind: train_tokenizer_from_iterator(kind, CORPUS, vocab_size=400) for kind in TOKENIZER_KINDS}


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_round_trip_english_and_chinese(trained: dict, kind: str) -> None:
    tok = trained[kind]
    for s in SAMPLES:
        ids = tok.encode(s)
        assert tok.unk_id not in ids, (kind, s)
        assert tok.decode(ids) == s, (kind, s, tok.tokens(s))


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_batch_encode_equals_single(trained: dict, kind: str) -> None:
    tok = trained[kind]
    assert tok.encode_batch(SAMPLES) == [tok.encode(s) for s in SAMPLES]


def test_bpe_never_unknown_on_unseen_characters(trained: dict) -> None:
    tok = trained["bpe"]
    unseen = "emoji 🦙🚀 rare CJK 𠀀𪚥龘 and Ωμέγα ünïcödé"
    ids = tok.encode(unseen)
    assert tok.unk_id not in ids
    assert tok.decode(ids) == unseen


@pytest.mark.parametrize("kind", ["wordpiece", "unigram", "char"])
def test_other_kinds_map_unseen_characters_to_unk(trained: dict, kind: str) -> None:
    tok = trained[kind]
    assert tok.unk_id in tok.encode("🦙")


def test_char_vocab_is_sorted_characters_then_specials(trained: dict) -> None:
    tok = trained["char"]
    chars = sorted(set("".join(CORPUS)))
    vocab = tok.backend.get_vocab()
    assert [vocab[c] for c in chars] == list(range(len(chars)))
    assert tok.vocab_size == len(chars) + 4  # pad, unk, bos, eos
    assert sorted([tok.pad_id, tok.unk_id, tok.bos_id, tok.eos_id]) == list(range(len(chars), len(chars) + 4))
    assert tok.encode("天下") == [vocab["天"], vocab["下"]]


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_special_tokens_configurable_and_atomic(kind: str) -> None:
    specials = {"bos": "<s>", "eos": "</s>", "pad": None, "unk": "<unk>", "mask": "<mask>"}
    tok = train_tokenizer_from_iterator(kind, CORPUS, vocab_size=400, special_tokens=specials)
    assert tok.pad_id is None
    for role in ("bos", "eos", "unk", "mask"):
        idx = getattr(tok, f"{role}_id")
        assert tok.id_to_token(idx) == specials[role]
    if kind != "char":  # BPE/WordPiece/Unigram put specials first, in role order (unk, bos, eos, mask)
        assert [tok.unk_id, tok.bos_id, tok.eos_id, tok.mask_id] == [0, 1, 2, 3]
    # a special token inside text is one token, and decodes back
    ids = tok.encode("hello</s>你好")
    assert ids.count(tok.eos_id) == 1
    assert tok.decode(ids) == "hello</s>你好"
    assert tok.decode(ids, skip_special_tokens=True) == "hello你好"


@pytest.mark.parametrize("kind", TOKENIZER_KINDS)
def test_save_load_with_and_without_sidecar(tmp_path, trained: dict, kind: str) -> None:
    tok = trained[kind]
    path = tok.save(tmp_path / kind)
    assert path == tmp_path / kind / "tokenizer.json"
    sidecar = json.loads((tmp_path / kind / "tokenizer_config.json").read_text())
    assert sidecar["eos_token"] == "<|endoftext|>" and sidecar["llmlab_kind"] == kind
    for loaded in (load_tokenizer(tmp_path / kind), load_tokenizer(path)):
        assert loaded.kind == kind and loaded.vocab_size == tok.vocab_size
        assert (loaded.bos_id, loaded.eos_id, loaded.pad_id, loaded.unk_id) == (
            tok.bos_id,
            tok.eos_id,
            tok.pad_id,
            tok.unk_id,
        )
        assert loaded.encode(ZH) == tok.encode(ZH) and loaded.decode(tok.encode(EN)) == EN
    (tmp_path / kind / "tokenizer_config.json").unlink()  # only tokenizer.json copied: roles from names
    bare = load_tokenizer(path)
    assert (bare.bos_id, bare.eos_id, bare.pad_id, bare.unk_id) == (tok.bos_id, tok.eos_id, tok.pad_id, tok.unk_id)


def test_transformers_reads_the_saved_tokenizer(tmp_path, trained: dict) -> None:
    from transformers import PreTrainedTokenizerFast

    trained["bpe"].save(tmp_path)
    hf = PreTrainedTokenizerFast.from_pretrained(str(tmp_path))
    assert hf.eos_token == "<|endoftext|>"
    assert hf.encode(EN, add_special_tokens=False) == trained["bpe"].encode(EN)


def test_train_from_files_folders_and_jsonl(tmp_path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text(EN, encoding="utf-8")
    (tmp_path / "docs" / "sub" / "b.md").write_text(ZH, encoding="utf-8")
    (tmp_path / "docs" / "ignored.bin").write_text("ignored ☃", encoding="utf-8")
    jl = tmp_path / "c.jsonl"
    jl.write_text(json.dumps({"body": "JSONL 记录 text"}, ensure_ascii=False) + "\n", encoding="utf-8")
    tok = train_tokenizer("char", [tmp_path / "docs", jl], vocab_size=0, text_field="body")
    vocab = tok.backend.get_vocab()
    assert "记" in vocab and "北" in vocab and "I" in vocab and "☃" not in vocab


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="unknown tokenizer kind"):
        train_tokenizer_from_iterator("sentencepiece", CORPUS, 300)
    with pytest.raises(ValueError, match="too small"):
        train_tokenizer_from_iterator("bpe", CORPUS, 100)
    with pytest.raises(ValueError, match="distinct"):
        train_tokenizer_from_iterator("bpe", CORPUS, 300, {"bos": "<x>", "eos": "<x>"})
    with pytest.raises(FileNotFoundError):
        load_tokenizer("/nonexistent/tokenizer.json")


def test_cli_train(tmp_path) -> None:
    src = tmp_path / "a.txt"
    src.write_text(EN + ZH, encoding="utf-8")
    out = tmp_path / "tok"
    r = subprocess.run(
        [sys.executable, "-m", "llmlab", "tokenizer", "train", str(src), "--kind", "wordpiece", "--vocab-size", "300",
         "--out", str(out), "--mask", "<|mask|>"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(out)
    assert tok.kind == "wordpiece" and tok.mask_id is not None and tok.decode(tok.encode(ZH)) == ZH
    r = subprocess.run(
        [sys.executable, "-m", "llmlab", "tokenizer", "train", str(tmp_path / "missing.txt"), "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert r.returncode == 2 and r.stderr.startswith("llmlab: error: source not found")


def _train_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmlab", "tokenizer", "train", *args], capture_output=True, text=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vocab-size", "-5"], "vocab_size must be a positive number of ids, got -5"),
        (["--kind", "char", "--vocab-size", "-5"], "vocab_size must be a positive number of ids, got -5"),
        (["--min-frequency", "-1"], "min_frequency must be 0 or more, got -1"),
        (["--encoding", "klingon"], "unknown encoding 'klingon'"),
    ],
)
def test_cli_bad_numbers_are_one_line_errors_before_writing(tmp_path, args: list[str], message: str) -> None:
    (tmp_path / "a.txt").write_text(EN, encoding="utf-8")
    r = _train_cli(str(tmp_path / "a.txt"), "--out", str(tmp_path / "tok"), *args)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
    assert not (tmp_path / "tok").exists()


def test_cli_output_folder_policy(tmp_path) -> None:
    src = tmp_path / "a.txt"
    src.write_text(EN + ZH, encoding="utf-8")
    out = tmp_path / "tok"
    assert _train_cli(str(src), "--vocab-size", "300", "--out", str(out)).returncode == 0
    r = _train_cli(str(src), "--vocab-size", "300", "--out", str(out))  # a second run: refused, names --overwrite
    assert r.returncode == 2 and "--overwrite" in r.stderr and r.stderr.count("\n") == 1
    r = _train_cli(str(src), "--kind", "char", "--out", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    assert load_tokenizer(out).kind == "char"
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    for target, message in [(mine, "llmlab did not create"), (mine / "thesis.tex", "exists and is not a folder"),
                            (mine / "thesis.tex" / "tok", "thesis.tex is a file")]:  # fmt: skip
        r = _train_cli(str(src), "--out", str(target), "--overwrite")
        assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.tex"] and (mine / "thesis.tex").read_text() == "keep me"


def test_non_utf8_file_names_the_file_and_the_fix(tmp_path) -> None:
    bad = tmp_path / "gbk.txt"
    bad.write_bytes(ZH.encode("gb18030"))
    r = _train_cli(str(bad), "--kind", "char", "--out", str(tmp_path / "tok"))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "gbk.txt is not utf-8 text" in r.stderr
    assert not (tmp_path / "tok").exists()
    r = _train_cli(str(bad), "--kind", "char", "--out", str(tmp_path / "tok"), "--encoding", "gb18030")
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(tmp_path / "tok")
    assert tok.decode(tok.encode(ZH)) == ZH
