"""Plain helpers for the fine-tuning tests (a uniquely named module: `tests/` has several conftest.py files)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import tiny_models

# Overrides that keep a CLI fine-tuning run quick and quiet.
FAST = ["train.device=cpu", "train.progress=false", "train.tensorboard=false", "train.log_interval=1"]
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


def finetune_args(method: str, base: Path, data: Path, *overrides: str) -> list[str]:
    """The argv of `llmlab finetune --method <method> base=<base> data.train=<data> <overrides...>`."""
    return ["finetune", "--method", method, f"base={base}", f"data.train={data}", *overrides]


def tiny_llama(vocab_size: int, seed: int = 0):
    """`llama-tiny`, untied, context 256, a larger init: outputs far from uniform, as in a trained model."""
    fields = {"max_position_embeddings": 256, "initializer_range": 0.2, "tie_word_embeddings": False}
    return tiny_models.tiny_llama(seed, vocab_size=vocab_size, **fields).train()


def tiny_gpt(vocab_size: int, seed: int = 0, dropout: float = 0.0):
    """`nano-char` with 4 heads and context 256."""
    return tiny_models.tiny_gpt(seed, vocab_size=vocab_size, block_size=256, n_head=4, dropout=dropout).train()


def count_records(n: int) -> list[dict[str, str]]:
    """Prompt-completion records of a second toy task (add one), for multi-task mixing."""
    return [{"prompt": f"{i} plus one is", "completion": f" {i + 1}"} for i in range(n)]
