"""Device and mixed-precision setup: fp32, bf16 autocast (CPU or CUDA), fp16 autocast + GradScaler (CUDA).

Mixed precision (Micikevicius et al. 2018, https://arxiv.org/abs/1710.03740) keeps fp32 master weights and runs
matmuls in a 16-bit type under ``torch.autocast``. bf16 has fp32's exponent range, so it needs no loss
scaling; fp16 does, hence ``torch.amp.GradScaler`` (dynamic loss scaling) for fp16 only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from llmlab.nn.device import resolve_device
from llmlab.train.config import PRECISIONS


def rank_device(name: str, local_rank: int = 0) -> torch.device:
    """``train.device`` resolved by `llmlab.nn.device.resolve_device`; under torchrun a bare ``cuda`` becomes
    ``cuda:<local_rank>`` (one GPU per rank).

    Raises:
        ValueError: a device string this machine does not have (the message lists those it has).
    """
    try:
        device = resolve_device(name)
    except ValueError as e:
        raise ValueError(f"train.device: {e}") from None
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank)
    return device


@dataclass
class Precision:
    """The resolved precision: the autocast dtype (None = fp32) and whether a GradScaler is needed."""

    name: str
    device_type: str
    dtype: torch.dtype | None

    @property
    def use_scaler(self) -> bool:
        return self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward-pass context: ``torch.autocast`` for bf16/fp16, a no-op for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def make_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler that is active only for fp16 (a disabled one is a transparent pass-through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.use_scaler)


def resolve_precision(precision: str, device: torch.device) -> Precision:
    """Map ``train.precision`` to a `Precision`.

    ``auto``: bf16 on a CUDA GPU that supports it, else fp16 on CUDA; fp32 on CPU (bf16 autocast on CPU is
    correct but only ~1.1x faster, and slower on CPUs without native bf16). ``fp16`` requires CUDA.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision '{precision}' (train.precision); choose one of: {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            precision = "fp32"
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("train.precision=fp16 needs a CUDA GPU (GradScaler); use bf16 or fp32 on CPU")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return Precision(name=precision, device_type=device.type, dtype=dtype)


def check_runtime(device: str, precision: str, distributed: str = "none") -> tuple[torch.device, Precision]:
    """Resolve ``train.device`` and ``train.precision`` together, before anything is written or loaded.

    Raises:
        ValueError: an unavailable device, fp16 without CUDA, or fp16 under FSDP2 (one line naming the key).
    """
    dev = rank_device(device)
    prec = resolve_precision(precision, dev)
    if distributed == "fsdp" and prec.use_scaler:
        raise ValueError("train.precision=fp16 is not supported with FSDP2; use train.precision=bf16")
    return dev, prec
