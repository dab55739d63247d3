"""Fixtures for the fine-tuning tests: a tiny BPE tokenizer trained here, tiny random GPT/Llama checkpoints
saved with it, and toy instruction data sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from finetune_helpers import tiny_gpt, tiny_llama, toy_records, write_jsonl  # noqa: F401


@pytest.fixture(scope="session")
def tokenizer():
    from llmlab.tokenizers import train_tokenizer_from_iterator

    texts = [json.dumps(r) for r in toy_records(200)] + [
        "Below is an instruction that describes a task. Write a response that appropriately completes the request.",
        "### Instruction:\n### Input:\n### Response:\n### 指令:\n### 输入:\n### 输出:\n",
        "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\nhi<|im_end|>\n",
        "positive negative great awful movie film loved hated",
    ]
    return train_tokenizer_from_iterator("bpe", texts * 3, vocab_size=400)


def saved_with_tokenizer(folder: Path, model, tokenizer) -> Path:  # noqa: ANN001
    """`model` saved in llmlab format in `folder`, with `tokenizer` beside it: a fine-tuning base."""
    model.save_pretrained(folder)
    tokenizer.save(folder)
    return folder


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer) -> Path:
    return saved_with_tokenizer(tmp_path_factory.mktemp("tiny-llama"), tiny_llama(tokenizer.vocab_size), tokenizer)


@pytest.fixture(scope="session")
def gpt_dir(tmp_path_factory, tokenizer) -> Path:
    return saved_with_tokenizer(tmp_path_factory.mktemp("tiny-gpt"), tiny_gpt(tokenizer.vocab_size), tokenizer)


@pytest.fixture
def toy_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", toy_records(120))
