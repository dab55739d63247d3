"""Partial fine-tuning: train only some of a model's parameters (no adapters).

Full fine-tuning needs no helper (every parameter trains). Both functions work on any llmlab model through its
structural accessors (`model.layers`, `model.final_norm`, `model.lm_head`) or explicit parameter names.
"""

from __future__ import annotations

import re

from torch import nn


def freeze_except(model: nn.Module, names: list[str]) -> list[str]:
    """Freeze every parameter except those under the given module/parameter names; return the trainable names.

    An entry matches a parameter when it is a dotted part of its name: `"lm_head"`, `"ln_f"`,
    `"transformer.h.3"`, `"mlp.c_fc.weight"`.

    Raises:
        ValueError: an entry matches no parameter (the message lists a few names).
    """
    params = list(model.named_parameters(remove_duplicate=False))  # tied weights under each of their names

    def hit(pname: str, entry: str) -> bool:
        return re.search(rf"(^|\.){re.escape(entry)}(\.|$)", pname) is not None

    for entry in names:
        if not any(hit(n, entry) for n, _ in params):
            raise ValueError(f"{entry!r} matches no parameter; examples: {', '.join(n for n, _ in params[:4])}")
    keep = {id(p) for n, p in params if any(hit(n, e) for e in names)}
    return _train_only(model, keep)


def train_last_n_layers(model: nn.Module, n: int, include_head: bool = True) -> list[str]:
    """Train only the last `n` of `model.layers` (plus `model.final_norm` and `model.lm_head` if `include_head`).

    With tied embeddings the output layer *is* the input embedding, so that is trained too.
    """
    layers = model.layers
    if not 0 <= n <= len(layers):
        raise ValueError(f"n={n} must be between 0 and the number of layers ({len(layers)})")
    modules: list[nn.Module] = list(layers[len(layers) - n :])
    if include_head:
        modules += [model.final_norm, model.lm_head]
    return _train_only(model, {id(p) for m in modules for p in m.parameters()})


def _train_only(model: nn.Module, keep: set[int]) -> list[str]:
    """Make exactly the parameters whose id is in `keep` trainable; return their names."""
    for p in model.parameters():
        p.requires_grad_(id(p) in keep)
    return [n for n, p in model.named_parameters() if id(p) in keep]
