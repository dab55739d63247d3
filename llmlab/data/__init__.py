"""Corpus preparation (read, clean, split, tokenize, pack into token shards) and token-window loaders.

    from llmlab.data import PrepareConfig, prepare_corpus, TokenDataset, RandomWindowLoader
    report = prepare_corpus(PrepareConfig(sources=["shakespeare"], out_dir="data/shakespeare"))
    loader = RandomWindowLoader(TokenDataset("data/shakespeare", "train"), batch_size=12, block_size=64, seed=1)
    x, y = loader.next_batch()  # (12, 64) LongTensors, y is x shifted by one token

The loaders import torch; they are loaded on first use so that preparing a corpus does not need it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PrepareConfig": "llmlab.data.config",
    "CleanConfig": "llmlab.data.config",
    "SplitConfig": "llmlab.data.config",
    "TokenizerSpec": "llmlab.data.config",
    "PrepareReport": "llmlab.data.prepare",
    "prepare_corpus": "llmlab.data.prepare",
    "TokenDataset": "llmlab.data.loader",
    "RandomWindowLoader": "llmlab.data.loader",
    "SequentialLoader": "llmlab.data.loader",
    "iter_documents": "llmlab.data.reader",
    "train_tokenizer": "llmlab.data.reader",
    "BUILTIN_CORPORA": "llmlab.data.sources",
    "scrub_pii": "llmlab.data.pii",
    "choose_dtype": "llmlab.data.shards",
    "read_shard": "llmlab.data.shards",
    "write_shard": "llmlab.data.shards",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'llmlab.data' has no attribute {name!r}")
