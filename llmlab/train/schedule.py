"""Learning-rate schedules, evaluated per iteration: linear warmup, then cosine / linear decay or constant.

The schedule is a pure function of the iteration number, so resuming only needs the iteration count (it is
still saved in the trainer state, with the schedule's settings, to catch a changed schedule on resume).

- Warmup (Goyal et al. 2017, https://arxiv.org/abs/1706.02677): lr grows linearly for ``warmup_iters``.
- Cosine decay to ``min_lr`` (Loshchilov & Hutter 2017, SGDR, https://arxiv.org/abs/1608.03983), as in
  nanoGPT and the Chinchilla / LLaMA recipes; after ``decay_iters`` the lr stays at ``min_lr``.
- Linear decay to ``min_lr``; constant (after warmup).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

SCHEDULES = ("cosine", "linear", "constant")


@dataclass
class LRSchedule:
    """``lr(it)`` for iteration ``it`` (0-based: the lr used by the ``it``-th optimizer step).

    Args:
        name: ``cosine``, ``linear`` or ``constant``.
        lr: the peak learning rate (reached at the end of warmup).
        warmup_iters: number of warmup iterations (lr = lr * (it + 1) / (warmup_iters + 1) during warmup,
            nanoGPT's convention, so the first step never uses lr = 0).
        min_lr: the floor reached at ``decay_iters`` (cosine / linear).
        decay_iters: the iteration where decay ends.
    """

    name: str
    lr: float
    warmup_iters: int
    min_lr: float
    decay_iters: int

    def __post_init__(self) -> None:
        if self.name not in SCHEDULES:
            raise ValueError(f"unknown schedule '{self.name}' (schedule.name); choose one of: {', '.join(SCHEDULES)}")
        if self.warmup_iters < 0:
            raise ValueError(f"schedule.warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.name != "constant" and self.decay_iters < self.warmup_iters:
            raise ValueError(
                f"schedule.decay_iters ({self.decay_iters}) is smaller than schedule.warmup_iters "
                f"({self.warmup_iters}); raise decay_iters or lower warmup_iters"
            )

    def __call__(self, it: int) -> float:
        if it < self.warmup_iters:
            return self.lr * (it + 1) / (self.warmup_iters + 1)
        if self.name == "constant":
            return self.lr
        if it >= self.decay_iters:
            return self.min_lr
        progress = (it - self.warmup_iters) / max(1, self.decay_iters - self.warmup_iters)  # in [0, 1)
        if self.name == "cosine":
            coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
        else:
            coeff = 1.0 - progress
        return self.min_lr + coeff * (self.lr - self.min_lr)

    def state_dict(self) -> dict[str, Any]:
        """The settings (primitives only) so a checkpoint records which schedule produced it."""
        return {
            "name": self.name,
            "lr": self.lr,
            "warmup_iters": self.warmup_iters,
            "min_lr": self.min_lr,
            "decay_iters": self.decay_iters,
        }
