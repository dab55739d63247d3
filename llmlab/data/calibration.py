"""Calibration windows: random token windows of a corpus, the activations that GPTQ and Wanda measure.

GPTQ (https://arxiv.org/abs/2210.17323) and Wanda (https://arxiv.org/abs/2306.11695) both run a few hundred
thousand tokens of ordinary text through the model to see which inputs each layer receives; `llmlab quantize
--scheme gptq-int4` and `llmlab prune --method wanda|2:4|structured` draw them here, from any source
`llmlab.data.sources.resolve_sources` understands (`shakespeare`, a file, a folder, JSONL with a "text" field).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from llmlab.data.sources import SourceFile, iter_jsonl


def read_calibration_text(files: Sequence[SourceFile], max_chars: int) -> str:
    """Up to `max_chars` characters of the files, in order (JSONL files: their "text" fields)."""
    parts: list[str] = []
    total = 0
    for f in files:
        texts = iter_jsonl(f.path, "text") if f.jsonl else [f.path.read_text(encoding="utf-8", errors="replace")]
        for text in texts:
            parts.append(text)
            total += len(text)
            if total >= max_chars:
                return "\n".join(parts)[:max_chars]
    return "\n".join(parts)


def calibration_windows(
    files: Sequence[SourceFile], tokenizer: Any, samples: int, tokens: int, seed: int = 0
) -> list[torch.Tensor]:
    """`samples` windows of `tokens` token ids, each (1, T), at seeded random offsets of the calibration text.

    Raises:
        ValueError: the text holds fewer than `tokens` + 1 tokens.
    """
    text = read_calibration_text(files, max_chars=max(samples * tokens * 16, 20_000))  # ~4 chars/token, 4x to draw
    ids = list(tokenizer.encode(text))
    if len(ids) < tokens + 1:
        raise ValueError(
            f"the calibration text has {len(ids)} tokens, fewer than one window of {tokens}; "
            "pass a longer --calibration source or shorter windows"
        )
    rng = random.Random(seed)
    starts = [rng.randrange(0, len(ids) - tokens) for _ in range(samples)]
    return [torch.tensor([ids[s : s + tokens]], dtype=torch.long) for s in starts]
