"""Plain helpers for the alignment tests (a uniquely named module: `tests/` has several conftest.py files)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import tiny_models

# Overrides that keep a CLI alignment run quick and quiet.
FAST = ["train.device=cpu", "train.progress=false", "train.tensorboard=false", "train.log_interval=1"]
GOOD = ["great", "lovely", "wonderful", "good", "fine"]
BAD = ["awful", "terrible", "bad", "boring", "poor"]


def toy_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Preference pairs of a learnable toy task: a positive word is chosen over a negative one."""
    rng = random.Random(seed)
    return [
        {"prompt": f"The movie {i % 7} was", "chosen": f" {rng.choice(GOOD)}", "rejected": f" {rng.choice(BAD)}"}
        for i in range(n)
    ]


def toy_prompts(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Prompt records (for PPO/GRPO) with the answer a verifiable reward can check."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        out.append({"prompt": f"{a} plus {b} is", "answer": str(a + b)})
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def tiny_llama(vocab_size: int, seed: int = 0):
    """`llama-tiny`, untied, context 256, a larger init (outputs far from uniform)."""
    fields = {"max_position_embeddings": 256, "initializer_range": 0.2, "tie_word_embeddings": False}
    return tiny_models.tiny_llama(seed, vocab_size=vocab_size, **fields).train()


def tiny_gpt(vocab_size: int, seed: int = 0):
    """`nano-char` with 4 heads and context 256."""
    return tiny_models.tiny_gpt(seed, vocab_size=vocab_size, block_size=256, n_head=4).train()
