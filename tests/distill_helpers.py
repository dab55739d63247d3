"""Tiny distillation fixtures: a char-tokenized corpus folder (as `llmlab data prepare` writes it) and a tiny Llama
teacher saved as a model folder with that tokenizer (uniquely named module: `tests/` has no `__init__.py`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from tiny_models import spread, tiny_llama

from llmlab.tokenizers import train_tokenizer_from_iterator

TEXT = (
    "the quick brown fox jumps over the lazy dog. a stitch in time saves nine. to be or not to be, that is the "
    "question. all that glitters is not gold. "
) * 40


def make_char_corpus(folder: Path) -> tuple[Path, int]:
    """(folder, vocab size): train/val uint16 shards of TEXT, meta.json and a real char tokenizer.json."""
    tok = train_tokenizer_from_iterator("char", [TEXT], 0)
    folder.mkdir(parents=True)
    tok.save(folder / "tokenizer.json")
    ids = np.array(tok.encode(TEXT), dtype=np.uint16)
    cut = int(len(ids) * 0.85)
    ids[:cut].tofile(folder / "train.bin")
    ids[cut:].tofile(folder / "val.bin")
    meta = {"dtype": "uint16", "vocab_size": tok.vocab_size, "tokenizer": "tokenizer.json",
            "train_tokens": cut, "val_tokens": len(ids) - cut}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder, tok.vocab_size


def make_teacher(folder: Path, corpus: Path, vocab: int, **overrides: object) -> Path:
    """A tiny Llama teacher (peaky random weights) saved with the corpus's tokenizer."""
    teacher = spread(tiny_llama(seed=3, vocab_size=vocab, **overrides), std=0.2, seed=3)
    teacher.save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes((corpus / "tokenizer.json").read_bytes())
    return folder
