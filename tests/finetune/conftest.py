"""Fixtures for the fine-tuning tests: a tiny BPE tokenizer trained here, tiny random GPT/Llama checkpoints
saved with it, and toy instruction data sets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

COLORS = {"apple": "red", "banana": "yellow", "grass": "green", "sky": "blue", "snow": "white", "coal": "black"}


def toy_records(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Alpaca records of a learnable toy task: name the color of a thing."""
    rng = random.Random(seed)
    things = sorted(COLORS)
    out = []
    for _ in range(n):
        thing = rng.choice(things)
        out.append({"instruction": "What color is it?", "input": thing, "output": COLORS[thing]})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


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


def tiny_llama(vocab_size: int, seed: int = 0):
    from llmlab.models.llama import Llama, LlamaConfig

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.2,
    )  # a larger init: outputs far from uniform, as in a trained model
    return Llama(cfg)


def tiny_gpt(vocab_size: int, seed: int = 0):
    from llmlab.models.gpt import GPT, GPTConfig

    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab_size, block_size=256, n_layer=2, n_head=4, n_embd=32, dropout=0.0))


@pytest.fixture(scope="session")
def llama_dir(tmp_path_factory, tokenizer) -> Path:
    d = tmp_path_factory.mktemp("tiny-llama")
    tiny_llama(tokenizer.vocab_size).save_pretrained(d)
    tokenizer.save(d)
    return d


@pytest.fixture(scope="session")
def gpt_dir(tmp_path_factory, tokenizer) -> Path:
    d = tmp_path_factory.mktemp("tiny-gpt")
    tiny_gpt(tokenizer.vocab_size).save_pretrained(d)
    tokenizer.save(d)
    return d


@pytest.fixture
def toy_data(tmp_path) -> Path:
    return write_jsonl(tmp_path / "train.jsonl", toy_records(120))
