"""Helpers of the human-evaluation tests (a uniquely named module): fixed outputs of two models, vote bodies."""

from __future__ import annotations

import json
from pathlib import Path

from llmlab.eval.human.store import CRITERIA

PROMPTS = ["Name a colour.", "What is 2+2?", "Say hello in Chinese."]
OUTPUTS = {
    "alpha": ["alpha: blue", "alpha: 4", "alpha: 你好"],
    "beta": ["beta: a colour", "beta: 5", "beta: hello"],
}


def write_outputs(folder: Path, outputs: dict[str, list[str]] = OUTPUTS, prompts: list[str] = PROMPTS) -> list[str]:
    """One {"prompt","output"} JSONL file per model in `folder`; returns the `--outputs NAME=FILE` values."""
    values = []
    for name, texts in outputs.items():
        path = folder / f"{name}.jsonl"
        path.write_text(
            "".join(json.dumps({"prompt": p, "output": o}) + "\n" for p, o in zip(prompts, texts, strict=True))
        )
        values.append(f"{name}={path}")
    return values


def all_ratings(score: int = 3) -> dict[str, dict[str, int]]:
    return {side: {c: score for c in CRITERIA} for side in ("left", "right")}
