"""Samplers: turn processed next-token logits (B, V) into one token id per row (B,).

A sampler is the last stage of a decoding step (model -> logits processors -> sampler). Greedy decoding
takes the argmax; ancestral sampling draws from softmax(logits) with an explicit `torch.Generator`, so a
seed reproduces a sample exactly regardless of other code using the global RNG.
"""

from __future__ import annotations

from typing import Protocol

import torch


class Sampler(Protocol):
    """Anything callable as `logits (B, V) -> token ids (B,)`."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor: ...


class GreedySampler:
    """Pick the most likely token (temperature 0). Ties go to the lowest token id, like `torch.argmax`."""

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.argmax(logits, dim=-1)


class MultinomialSampler:
    """Draw one token per row from `softmax(logits)`.

    Args:
        generator: the random source; `None` uses torch's global RNG.
    """

    def __init__(self, generator: torch.Generator | None = None) -> None:
        self.generator = generator

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), dim=-1)  # (B, V), fp32 for a well-formed distribution
        return torch.multinomial(probs, num_samples=1, generator=self.generator).squeeze(-1)  # (B,)


def make_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator | None:
    """A `torch.Generator` seeded with `seed` on `device`, or `None` (global RNG) when `seed` is None."""
    if seed is None:
        return None
    gen = torch.Generator(device=device)
    gen.manual_seed(int(seed))
    return gen
