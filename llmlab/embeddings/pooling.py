"""Pooling token states into one sentence vector: mean over real tokens (Sentence-BERT's default, Reimers &
Gurevych 2019, https://arxiv.org/abs/1908.10084), the [CLS] token, or the element-wise max; then optional L2
normalisation (so a dot product is the cosine similarity)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

POOLINGS = ("mean", "cls", "max")


def check_pooling(pooling: str) -> None:
    """One-line ValueError for an unknown pooling name."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of: {', '.join(POOLINGS)}")


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """Sentence vectors (B, C) from token states `hidden` (B, T, C) and `attention_mask` (B, T) (1 = real).

    mean: sum of real tokens / their count (as sentence-transformers, count clamped at 1e-9); cls: position 0;
    max: element-wise max over real tokens (padding set to -1e9 first, as sentence-transformers).
    """
    check_pooling(pooling)
    if pooling == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    if pooling == "max":
        return hidden.masked_fill(mask == 0, -1e9).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)  # (B, C)
    return summed / mask.sum(dim=1).clamp(min=1e-9)


def l2_normalize(vectors: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (B, C) (a zero row stays zero)."""
    return F.normalize(vectors, p=2, dim=-1)
