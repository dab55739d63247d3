"""How many positions a model reserves before the first real token — the protocol through which PEFT tells
decoding and evaluation about soft prompts and prefixes without those layers importing `llmlab.peft`.

A module anywhere in the model that implements `ReservesPositions` (prompt tuning's embedding, prefix tuning's
encoder) reports `(positions, cache_entries)`:

- positions: positions taken before the first real token (P for prompt and prefix tuning), which the model's
  context window loses;
- cache_entries: KV-cache entries they occupy (prompt tuning: P, its soft prompt is prefilled like tokens;
  prefix tuning: 0, its keys/values are prepended inside every layer instead).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn


@runtime_checkable
class ReservesPositions(Protocol):
    """A module that puts virtual positions before the real tokens while it is enabled."""

    def reserved_positions(self) -> tuple[int, int]:
        """(positions, cache_entries); (0, 0) while disabled."""
        ...


def reserved_positions(model: nn.Module) -> tuple[int, int]:
    """(positions, cache_entries) that `model` reserves before the real tokens, summed over its modules."""
    positions = entries = 0
    for module in model.modules():
        if isinstance(module, ReservesPositions):
            p, e = module.reserved_positions()
            positions += p
            entries += e
    return positions, entries


def context_length(model: nn.Module, reserved: int | None = None) -> int:
    """How many real tokens fit in `model`'s context: its maximum positions minus the reserved ones
    (`reserved`: the positions `reserved_positions` already reported, to walk the modules only once)."""
    config = model.config
    limit = getattr(config, "block_size", None) or config.max_position_embeddings
    return int(limit) - (reserved_positions(model)[0] if reserved is None else reserved)
