"""Fixtures for the alignment tests: a tiny BPE tokenizer trained here and tiny random Llama/GPT checkpoints
saved with it (bases for `llmlab align`), plus toy preference/prompt files."""

from __future__ import annotations

from pathlib import Path

import pytest
from align_helpers import BAD, GOOD, tiny_gpt, tiny_llama, toy_pairs, toy_prompts, write_jsonl


@pytest.fixture(scope="session")
def tokenizer():
    from llmlab.tokenizers import train_tokenizer_from_iterator

    texts = [f"{p['prompt']}{p['chosen']}{p['rejected']}" for p in toy_pairs(100)]
    texts += [p["prompt"] + " " + p["answer"] for p in toy_prompts(100)]
    texts += [
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n",
        " ".join(GOOD + BAD),
        "0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18",
    ]
    return train_tokenizer_from_iterator("bpe", texts * 3, vocab_size=300)


def saved_with_tokenizer(folder: Path, model, tokenizer) -> Path:  # noqa: ANN001
    """`model` saved in llmlab format in `folder`, with `tokenizer` beside it: an alignment base."""
    model.save_pretrained(folder)
    tokenizer.save(folder)
    return folder


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer) -> Path:
    return saved_with_tokenizer(tmp_path_factory.mktemp("tiny-llama"), tiny_llama(tokenizer.vocab_size), tokenizer)


@pytest.fixture(scope="session")
def gpt_dir(tmp_path_factory, tokenizer) -> Path:
    return saved_with_tokenizer(tmp_path_factory.mktemp("tiny-gpt"), tiny_gpt(tokenizer.vocab_size), tokenizer)


@pytest.fixture()
def pairs_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(48))


@pytest.fixture()
def prompts_file(tmp_path) -> Path:
    return write_jsonl(tmp_path / "prompts.jsonl", toy_prompts(48))
