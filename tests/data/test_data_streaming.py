"""Streaming preparation: bounded chunks give the same text, pieces and token ids as whole documents."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from llmlab.config import load_config
from llmlab.data import PrepareConfig, TokenDataset, prepare_corpus, read_shard
from llmlab.data.clean import Document, clean_documents, normalize_text
from llmlab.data.config import CleanConfig
from llmlab.data.reader import iter_chunks, iter_documents, iter_paragraphs, safe_cut
from llmlab.data.sources import split_paragraphs
from llmlab.tokenizers import load_tokenizer, train_tokenizer_from_iterator

ZH = "今天的天气非常好，我们去公园散步吗？当然！注意：别迟到；好的。"
WORDS = "the cat sat on a warm mat while birds sang in the old garden near our house".split()


def _text(seed: int, n_paragraphs: int) -> str:
    """Paragraphs of wrapped English lines and Chinese, with odd whitespace (runs of spaces, blank lines)."""
    rng = random.Random(seed)
    paras = []
    for _ in range(n_paragraphs):
        if rng.random() < 0.2:
            paras.append(ZH * rng.randint(1, 3))
            continue
        lines = [" ".join(rng.choices(WORDS, k=rng.randint(3, 12))) for _ in range(rng.randint(1, 6))]
        paras.append(rng.choice(["\n", "  \n", "\n\t"]).join(lines) + rng.choice(["", ".", "  "]))
    return "".join(p + rng.choice(["\n\n", "\n \n", "\n\n\n", "\n  \n  "]) for p in paras)


def test_safe_cut_prefers_line_breaks_then_spaces() -> None:
    assert safe_cut("abc", 10) == 3
    assert safe_cut("aaaa\nbbbb\ncc", 11) == 10  # after the last "\n" between non-space characters
    assert safe_cut("aaaa bbbb cccc", 12) == 9  # before the space
    assert safe_cut("一二三四五六七八九十", 6) == 6  # no whitespace: between two characters


@pytest.mark.parametrize("block", [7, 64, 1000])
def test_streamed_paragraphs_equal_split_paragraphs(block: int) -> None:
    text = _text(1, 60)
    blocks = [text[i : i + block] for i in range(0, len(text), block)]
    assert list(iter_paragraphs(blocks, 10_000)) == split_paragraphs(text)
    assert list(iter_paragraphs(["\n\n  x"], 100)) == split_paragraphs("\n\n  x")
    pieces = list(iter_paragraphs(blocks, 50))  # long paragraphs are cut, nothing is lost
    assert "".join(p + s for p, s in pieces) == text and max(len(p) for p, _ in pieces) <= 50


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram", "char"])
def test_chunked_encoding_equals_whole_document(kind: str) -> None:
    text = _text(2, 80)
    tok = train_tokenizer_from_iterator(kind, [text], 400)
    chunks = list(iter_chunks([text[i : i + 333] for i in range(0, len(text), 333)], 1500))
    assert "".join(chunks) == text and len(chunks) > 5
    assert [i for ids in tok.encode_batch(chunks) for i in ids] == tok.encode(text)
    if kind in ("bpe", "char"):  # training on chunks: the same tokenizer (WordPiece/Unigram training is not
        chunked = train_tokenizer_from_iterator(kind, iter(chunks), 400)  # deterministic even on equal input)
        assert chunked.backend.to_str() == tok.backend.to_str()


def test_small_chunks_give_the_same_corpus_as_whole_documents(tmp_path: Path) -> None:
    src = tmp_path / "one.txt"
    src.write_text(_text(3, 400) + "Mail me at someone@example.com\n", encoding="utf-8")
    outs = {}
    for chunk in (1_000_000, 1000):
        cfg = load_config(PrepareConfig, None, [f"sources=[{src}]", f"out_dir={tmp_path / str(chunk)}",
                                                f"chunk_chars={chunk}", "tokenizer.vocab_size=400",
                                                "clean.quality.enabled=false"])  # fmt: skip
        report = prepare_corpus(cfg)
        outs[chunk] = report
    a, b = (tmp_path / "1000000", tmp_path / "1000")
    for name in ("train.bin", "val.bin", "tokenizer.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ra, rb = outs[1_000_000], outs[1000]
    assert ra.train_tokens == rb.train_tokens and ra.steps[2].removed == rb.steps[2].removed > 0  # exact dups


def test_quality_judges_a_long_document_window_by_window() -> None:
    cfg = CleanConfig()
    cfg.disable_all()
    cfg.quality.enabled = True
    cfg.quality.max_duplicate_line_fraction = cfg.quality.max_duplicate_ngram_fraction = 1.0  # symbols rule only
    good = "A plain sentence of ordinary words, nothing odd about it at all.\n\n"
    junk = ("#### $$$ @@@ ||| {{{ }}} ~~~ <<< >>> === *** +++ %%% ^^^ &&& ***" * 2)[: len(good) - 2] + "\n\n"
    text = (good * 10 + junk * 10) * 3  # windows of 10 paragraphs: good, junk, good, ...
    kept, reports = clean_documents([Document(text, "t")], cfg, chunk_chars=10 * len(good))
    assert kept and kept[0].text == good * 30
    assert reports[4].documents_removed == 0 and reports[4].details["symbols"] == 3


def test_nfkc_keeps_chinese_punctuation_by_default(tmp_path: Path) -> None:
    sentence = "你好，世界！今天吃什么？随便；好吧：面条（大碗）。ＡＢＣ１２３ ﬁ"
    assert normalize_text(sentence) == "你好，世界！今天吃什么？随便；好吧：面条（大碗）。ABC123 fi"
    assert (
        normalize_text(sentence, keep_cjk_punctuation=False) == "你好,世界!今天吃什么?随便;好吧:面条(大碗)。ABC123 fi"
    )
    src = tmp_path / "zh.txt"
    src.write_text((sentence + "\n\n") * 3, encoding="utf-8")
    cfg = load_config(PrepareConfig, None, [f"sources=[{src}]", f"out_dir={tmp_path / 'out'}", "tokenizer.kind=char",
                                            "clean.exact_dedup.enabled=false", "clean.near_dedup.enabled=false",
                                            "clean.quality.enabled=false"])  # fmt: skip
    prepare_corpus(cfg)
    tok = load_tokenizer(tmp_path / "out")
    text = tok.decode(TokenDataset(tmp_path / "out", "train").tokens)
    assert "，" in text and "？" in text and "," not in text and "Ａ" not in text


def test_documents_line_and_paragraph_modes_stream(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("one\ntwo\n\n\nthree four\n  \nfive", encoding="utf-8")
    lines = ["".join(p + s for p, s in d.parts) for d in iter_documents([str(src)], documents="line", chunk_chars=1000)]
    assert [t for t in lines if t.strip()] == [t for t in src.read_text().splitlines() if t.strip()]
    paras = ["".join(p for p, _ in d.parts) for d in iter_documents([str(src)], documents="paragraph")]
    assert paras == [p for p, _ in split_paragraphs(src.read_text())]


def test_odd_sized_shard_and_non_utf8_file_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "odd.bin").write_bytes(b"\x00" * 7)
    with pytest.raises(ValueError, match=r"odd.bin has 7 bytes, not a multiple of 2"):
        read_shard(tmp_path / "odd.bin", np.uint16)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café crème\n".encode("latin-1"))
    r = subprocess.run([sys.executable, "-m", "llmlab", "data", "prepare", "-s", str(bad), "--out",
                        str(tmp_path / "out")], capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "latin1.txt is not utf-8 text" in r.stderr
    assert "--encoding" in r.stderr and not (tmp_path / "out").exists()
    r = subprocess.run([sys.executable, "-m", "llmlab", "data", "prepare", "-s", str(bad), "--out",
                        str(tmp_path / "out"), "--encoding", "latin-1", "--no-clean", "--tokenizer-kind", "char"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    tok = load_tokenizer(tmp_path / "out")
    assert tok.decode(TokenDataset(tmp_path / "out", "train").tokens).startswith("café crèm")  # tail split
