"""Tiny stand-ins for quantized linear layers (the kernels.py layouts), for kernel and fast-path tests.

H-QUANT's `llmlab.compress.quant` modules expose the same buffers; the fast path only reads the buffers.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.compress.kernels import int4_linear, int8_linear, pack_int4


def quantize_int8(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per group: (qweight (N, K) int8, scale (N, G) float16)."""
    n, k = w.shape
    wg = w.view(n, k // group, group)
    scale = (wg.abs().amax(-1) / 127).clamp_min(1e-8).half()  # (N, G)
    q = (wg / scale.float()[..., None]).round().clamp(-127, 127).to(torch.int8)
    return q.view(n, k), scale


def quantize_int4(w: torch.Tensor, group: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric int4 per group: (packed (N, K/2) uint8, scale (N, G), zero (N, G) float16)."""
    n, k = w.shape
    wg = w.view(n, k // group, group)
    lo, hi = wg.amin(-1), wg.amax(-1)
    scale = ((hi - lo) / 15).clamp_min(1e-8).half()
    zero = lo.half()
    q = ((wg - zero.float()[..., None]) / scale.float()[..., None]).round().clamp(0, 15)
    return pack_int4(q.view(n, k)), scale, zero


class Int8Stub(nn.Module):
    """qweight/scale/bias buffers; forward = `int8_linear`."""

    def __init__(self, linear: nn.Linear, group: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        qweight, scale = quantize_int8(linear.weight.detach(), group)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int8_linear(x, self.qweight, self.scale, self.bias)


class Int4Stub(nn.Module):
    """packed/scale/zero/bias buffers; forward = `int4_linear`."""

    def __init__(self, linear: nn.Linear, group: int) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        packed, scale, zero = quantize_int4(linear.weight.detach(), group)
        self.register_buffer("packed", packed)
        self.register_buffer("scale", scale)
        self.register_buffer("zero", zero)
        self.register_buffer("bias", None if linear.bias is None else linear.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return int4_linear(x, self.packed, self.scale, self.zero, self.bias)


def quantize_layers(model: nn.Module, attention: str, mlp: str, group: int = 16) -> nn.Module:
    """Swap a Llama's attention / MLP projections for "int8", "int4" or "float" (unchanged) stubs, in place."""
    stubs = {"int8": Int8Stub, "int4": Int4Stub}
    for layer in model.layers:
        for parent, kind in ((layer.self_attn, attention), (layer.mlp, mlp)):
            if kind == "float":
                continue
            for name, child in list(parent.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, stubs[kind](child, group))
    return model
