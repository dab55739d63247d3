"""Matmuls over packed low-bit weights: the storage layouts and the functions every quantized layer calls.

Layouts (N = out features, K = in features, g = group size, G = K // g groups per row):

    int8:  qweight (N, K) int8;             scale (N, G) float16          w = q * scale[group]
    int4:  packed  (N, K // 2) uint8;       scale (N, G), zero (N, G) float16
           low nibble = column 2i, high nibble = column 2i + 1, q in 0..15   w = q * scale[group] + zero[group]
           (symmetric: zero = -8 * scale; llama.cpp Q4_0 is g = 32 symmetric, Q4_1 g = 32 with zero = its `m`)

Per-channel int8 is g = K (G = 1). Scales are stored in float16 (as llama.cpp does), computed in float32.

The functions here are the reference versions (dequantise, then `F.linear`); faster paths may replace their
bodies but never their signatures or results (tests/compress/test_kernels.py compares with `dequantize_*`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dequantize_int8(qweight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, K) int8 + (N, G) scales -> (N, K) weight in `dtype`."""
    n, k = qweight.shape
    groups = scale.shape[1]
    w = qweight.view(n, groups, k // groups).to(torch.float32) * scale.to(torch.float32)[:, :, None]
    return w.view(n, k).to(dtype)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """(N, K // 2) uint8 -> (N, K) uint8 values in 0..15 (low nibble first)."""
    return torch.stack((packed & 0x0F, packed >> 4), dim=-1).view(packed.shape[0], -1)


def pack_int4(q: torch.Tensor) -> torch.Tensor:
    """(N, K) integer values in 0..15 (K even) -> (N, K // 2) uint8 (column 2i in the low nibble)."""
    q = q.to(torch.uint8)
    return q[:, 0::2] | (q[:, 1::2] << 4)


def dequantize_int4(
    packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(N, K // 2) uint8 + (N, G) scale and zero -> (N, K) weight in `dtype`."""
    q = unpack_int4(packed)
    n, k = q.shape
    groups = scale.shape[1]
    w = q.view(n, groups, k // groups).to(torch.float32) * scale.to(torch.float32)[:, :, None]
    w = w + zero.to(torch.float32)[:, :, None]
    return w.view(n, k).to(dtype)


def int8_linear(
    x: torch.Tensor, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """x (..., K) @ dequant(qweight, scale)^T (+ bias) -> (..., N) in x's dtype."""
    return F.linear(x, dequantize_int8(qweight, scale, x.dtype), bias)


def int4_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """x (..., K) @ dequant(packed, scale, zero)^T (+ bias) -> (..., N) in x's dtype."""
    return F.linear(x, dequantize_int4(packed, scale, zero, x.dtype), bias)
