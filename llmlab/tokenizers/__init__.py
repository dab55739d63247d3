"""Tokenizers: train byte-level BPE, WordPiece, Unigram or character-level tokenizers; load `tokenizer.json`.

from llmlab.tokenizers import train_tokenizer, load_tokenizer
tok = train_tokenizer("bpe", ["corpus.txt"], vocab_size=4096, special_tokens={"eos": "<|endoftext|>"})
tok.save("out/")                      # out/tokenizer.json (+ out/tokenizer_config.json)
ids = load_tokenizer("out").encode("hello")
"""

from llmlab.tokenizers.core import DEFAULT_SPECIAL_TOKENS, SPECIAL_ROLES, Tokenizer, load_tokenizer
from llmlab.tokenizers.train import (
    TOKENIZER_KINDS,
    resolve_special_tokens,
    train_tokenizer,
    train_tokenizer_from_iterator,
)

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "SPECIAL_ROLES",
    "TOKENIZER_KINDS",
    "Tokenizer",
    "load_tokenizer",
    "resolve_special_tokens",
    "train_tokenizer",
    "train_tokenizer_from_iterator",
]
