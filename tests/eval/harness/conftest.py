"""Shared fixtures of the harness tests: a small BPE tokenizer and a tiny Llama with spread-out weights."""

from __future__ import annotations

import pytest
from tiny_models import spread, tiny_llama

CORPUS = [
    "Review: the film was great. Sentiment: positive\n"
    "Review: awful, boring and long. Sentiment: negative\n"
    "Question: 12 + 7 = 19\nQuestion: 40 - 3 = 37\nThe quick brown fox jumps over the lazy dog.\n" * 30
]
SPECIALS = {"pad": "<|pad|>", "unk": "<|unk|>", "bos": "<|bos|>", "eos": "<|endoftext|>"}


@pytest.fixture(scope="session")
def bpe_tokenizer():
    """A 300-token byte-level BPE tokenizer (BOS, EOS, pad, unk), trained in a fraction of a second."""
    from llmlab.tokenizers import train_tokenizer_from_iterator

    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens=SPECIALS)


@pytest.fixture(scope="session")
def tiny_lm_model(bpe_tokenizer):
    """A random tiny Llama over the tokenizer's vocabulary (context 64), weights spread so scores differ."""
    return spread(tiny_llama(0, vocab_size=bpe_tokenizer.vocab_size, max_position_embeddings=64), std=0.2, seed=0)
