"""Tokenizers: train byte-level BPE, WordPiece, Unigram or character-level tokenizers; load `tokenizer.json`.

from llmlab.tokenizers import train_tokenizer_from_iterator, load_tokenizer
tok = train_tokenizer_from_iterator("bpe", texts, vocab_size=4096, special_tokens={"eos": "<|endoftext|>"})
tok.save("out/")                      # out/tokenizer.json (+ out/tokenizer_config.json)
ids = load_tokenizer("out").encode("hello")

Training on files, folders or built-in corpora (read as a stream) is `llmlab.data.train_tokenizer`: reading
corpora belongs to `llmlab.data`, which imports this package, never the other way round.
"""

from llmlab.tokenizers.core import DEFAULT_SPECIAL_TOKENS, SPECIAL_ROLES, Tokenizer, load_tokenizer
from llmlab.tokenizers.train import (
    TOKENIZER_KINDS,
    check_training_args,
    resolve_special_tokens,
    train_tokenizer_from_iterator,
)

__all__ = [
    "DEFAULT_SPECIAL_TOKENS",
    "SPECIAL_ROLES",
    "TOKENIZER_KINDS",
    "Tokenizer",
    "check_training_args",
    "load_tokenizer",
    "resolve_special_tokens",
    "train_tokenizer_from_iterator",
]
