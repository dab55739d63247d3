"""Exponential moving average (EMA, Polyak averaging) of the trainable weights during training.

After every optimizer step the trainer calls `EMA.update`, which moves an fp32 *shadow* copy of each trainable
parameter toward its new value::

    decay_t  = min(train.ema_decay, (1 + t) / (10 + t))      # t = updates done so far
    shadow  <- decay_t * shadow + (1 - decay_t) * param

The warmup ``(1 + t) / (10 + t)`` is TensorFlow's ``ExponentialMovingAverage(num_updates=...)`` rule: the
shadow starts at the *initial* weights, and with a fixed decay of 0.999 a 500-step run would still hold ~60% of
the random initialisation (0.999^500); the warmup makes early updates nearly plain copies, so the average covers
roughly the last ``1 / (1 - decay_t)`` steps. It is always on.

References: Polyak & Juditsky 1992 (https://doi.org/10.1137/0330046); timm's ``ModelEmaV2``
(https://github.com/huggingface/pytorch-image-models/blob/main/timm/utils/model_ema.py); model soups / weight
averaging (Wortsman et al. 2022, https://arxiv.org/abs/2203.05482).

The shadow is kept beside the parameters (same device; a DTensor shard of the same layout under FSDP2) so an
update costs one fused ``lerp_`` per parameter and no communication. `state_dict` returns full fp32 CPU tensors
(a collective under FSDP: every rank must call it), which the trainer stores in ``trainer_state.pt`` (exact
resume) and writes as a loadable model in ``checkpoints/<name>/ema/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import torch


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay used for update number `updates` (0-based): ``min(decay, (1 + t) / (10 + t))``."""
    return min(decay, (1 + updates) / (10 + updates))


def _full(t: torch.Tensor) -> torch.Tensor:
    """A full CPU copy of `t` (DTensor shards are all-gathered: collective)."""
    if hasattr(t, "full_tensor"):
        t = t.full_tensor()
    return t.detach().cpu().clone()


class EMA:
    """An fp32 exponential moving average of named parameters.

    Args:
        named_params: ``(name, parameter)`` pairs to average (the trainer passes the trainable ones, tied
            parameters once, as ``named_parameters`` yields them).
        decay: the target decay in (0, 1), e.g. 0.999.
    """

    def __init__(self, named_params: Iterable[tuple[str, torch.Tensor]], decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"train.ema_decay must be in (0, 1) to keep an EMA (0 = off), got {decay}")
        self.decay, self.updates = float(decay), 0
        self.params = dict(named_params)
        with torch.no_grad():
            self.shadow = {name: p.detach().float().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """Move the shadow toward the current parameters (call after each optimizer step)."""
        weight = 1.0 - ema_decay_at(self.decay, self.updates)
        for name, p in self.params.items():
            self.shadow[name].lerp_(p.detach().float(), weight)
        self.updates += 1

    def state_dict(self) -> dict[str, Any]:
        """``{"decay", "updates", "shadow": {name: full fp32 CPU tensor}}`` (collective under FSDP)."""
        return {"decay": self.decay, "updates": self.updates, "shadow": {n: _full(t) for n, t in self.shadow.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a `state_dict` exactly (every rank passes the full tensors; FSDP keeps its shard).

        Raises:
            ValueError: the saved parameter names or shapes differ from these parameters.
        """
        saved = state["shadow"]
        if set(saved) != set(self.shadow):
            diff = sorted(set(saved) ^ set(self.shadow))
            raise ValueError(
                f"the checkpoint's EMA weights do not match this model's trainable parameters (e.g. {diff[0]}); "
                "resume with the same model and trainable settings, or set train.ema_decay=0"
            )
        for name, shadow in self.shadow.items():
            full = saved[name].to(torch.float32)
            if hasattr(shadow, "full_tensor"):  # FSDP2: keep this rank's shard of the full tensor
                from torch.distributed.tensor import distribute_tensor

                full = distribute_tensor(full.to(shadow.device), shadow.device_mesh, shadow.placements)
            if tuple(full.shape) != tuple(shadow.shape):
                raise ValueError(
                    f"EMA weight {name} has shape {tuple(full.shape)} in the checkpoint, {tuple(shadow.shape)} "
                    "in the model; resume with the same model"
                )
            shadow.copy_(full)
        self.updates = int(state["updates"])

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Inside the block the parameters hold the EMA values (cast to their dtype); restored exactly after.

        Not for FSDP2 shards (the trainer saves an FSDP run's EMA from the gathered full weights instead).
        """
        backup = {name: p.detach().clone() for name, p in self.params.items()}
        try:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(self.shadow[name])
            yield
        finally:
            with torch.no_grad():
                for name, p in self.params.items():
                    p.copy_(backup[name])
