"""Matmuls over packed low-bit weights: the storage layouts and the functions every quantized layer calls.

Layouts (N = out features, K = in features, g = group size, G = K // g groups per row):

    int8:  qweight (N, K) int8;             scale (N, G) float16          w = q * scale[group]
    int4:  packed  (N, K // 2) uint8;       scale (N, G), zero (N, G) float16
           low nibble = column 2i, high nibble = column 2i + 1, q in 0..15   w = q * scale[group] + zero[group]
           (symmetric: zero = -8 * scale; llama.cpp Q4_0 is g = 32 symmetric, Q4_1 g = 32 with zero = its `m`)

Per-channel int8 is g = K (G = 1). Scales are stored in float16 (as llama.cpp does), computed in float32.

Two paths, one result (tests/compress/test_kernels.py compares both with `dequantize_*` + `F.linear`):

- eager (and prompt-sized inputs, more than `SMALL_ROWS` rows): dequantise, then `F.linear` (an MKL GEMM);
- under `torch.compile` with at most `SMALL_ROWS` rows (a batch-1 decode step): the product written as
  dequantise-multiply-sum, `(x[..., None, :] * (q * scale + zero)).sum(-1)`, which Inductor turns into ONE
  vectorised C++ loop reading the packed bytes (never an (N, K) float copy). Measured on 2 threads, the
  49152x576 LM head at batch 1: fp32 `F.linear` ~10 ms, compiled fp32 multiply-sum ~4 ms, compiled int8
  ~1.2 ms (see /work docs/compression.md, "fast decoding"). `float_linear` is the same rule for float weights.
  Batch-8 decode uses `F.linear` (see `SMALL_ROWS`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SMALL_ROWS = 1
"""Inputs with at most this many rows (tokens x batch) take the compiled multiply-sum path under torch.compile.

One row only: Inductor's multiply-sum loop does not reuse a weight across rows, so at batch 8 it read the
weights 8 times (SmolLM2 fp32 batch-8 step 729 ms); `F.linear` (MKL) at 8 rows took 190 ms (2 threads)."""


def _small(x: torch.Tensor) -> bool:
    """Whether `x` (..., K) is decode-sized and being traced by torch.compile (where multiply-sum is fast)."""
    return torch.compiler.is_compiling() and x.numel() // max(x.shape[-1], 1) <= SMALL_ROWS


def _multiply_sum(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x (..., K) . w (N, K) -> (..., N), accumulated in float32, as a broadcast multiply and a sum over K."""
    y = (x.unsqueeze(-2).float() * w.float()).sum(-1)  # (..., N)
    if bias is not None:
        y = y + bias.float()
    return y.to(x.dtype)


def float_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """`F.linear` for float weights; under torch.compile with few rows, the multiply-sum form (2-3x faster)."""
    if _small(x):
        return _multiply_sum(x, weight, bias)
    return F.linear(x, weight, bias)


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
    if _small(x):  # the dequantisation fuses into the reduction loop: int8 bytes are read once
        n, k = qweight.shape
        groups = scale.shape[1]
        w = (qweight.view(n, groups, k // groups).float() * scale.float()[:, :, None]).view(n, k)
        return _multiply_sum(x, w, bias)
    return F.linear(x, dequantize_int8(qweight, scale, x.dtype), bias)


def int4_linear(
    x: torch.Tensor,
    packed: torch.Tensor,
    scale: torch.Tensor,
    zero: torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """x (..., K) @ dequant(packed, scale, zero)^T (+ bias) -> (..., N) in x's dtype."""
    if _small(x):
        return _int4_multiply_sum(x, packed, scale, zero, bias)
    return F.linear(x, dequantize_int4(packed, scale, zero, x.dtype), bias)


def _int4_multiply_sum(
    x: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The compiled decode form of `int4_linear`: unpack, dequantise and multiply-sum in one fused loop.

    Of the forms tried this one was fastest under Inductor (still ~4x slower than int8 per weight: the nibble
    interleave defeats vectorisation; `int4_codes_linear` over one code per byte runs at int8 speed).
    """
    return int4_codes_linear(x, unpack_int4(packed), scale, zero, bias)


def int4_codes_linear(
    x: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """`int4_linear` over unpacked codes (N, K) uint8 (0..15, one per byte, as `unpack_int4` gives).

    Twice the bytes of the packed layout, but the compiled decode loop vectorises like int8's: the fast
    decoder (`llmlab.generate.fast`) unpacks int4 layers once into this form.
    """
    n, k = codes.shape
    groups = scale.shape[1]
    w = codes.view(n, groups, k // groups).float() * scale.float()[:, :, None] + zero.float()[:, :, None]
    if _small(x):
        return _multiply_sum(x, w.view(n, k), bias)
    return F.linear(x, w.view(n, k).to(x.dtype), bias)
