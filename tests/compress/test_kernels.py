"""The int8/int4/float kernels equal the reference (dequantise + F.linear), eager and under torch.compile."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llmlab.compress.kernels import (
    dequantize_int4,
    dequantize_int8,
    float_linear,
    int4_codes_linear,
    int4_linear,
    int8_linear,
    pack_int4,
    unpack_int4,
)


def _int8(n: int, k: int, group: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (n, k), generator=g, dtype=torch.int8)
    scale = (torch.rand(n, k // group, generator=g) * 0.02 + 1e-3).half()
    return q, scale


def _int4(n: int, k: int, group: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 16, (n, k), generator=g)
    scale = (torch.rand(n, k // group, generator=g) * 0.02 + 1e-3).half()
    zero = (torch.randn(n, k // group, generator=g) * 0.05).half()
    return pack_int4(q), scale, zero


def test_pack_unpack_round_trip():
    q = torch.randint(0, 16, (5, 12))
    assert torch.equal(unpack_int4(pack_int4(q)).long(), q)


@pytest.mark.parametrize(("rows", "n", "k", "group"), [(1, 48, 64, 64), (8, 40, 96, 32), (70, 24, 64, 16)])
def test_eager_kernels_equal_reference(rows, n, k, group):
    x = torch.randn(rows, k)
    bias = torch.randn(n)
    q, s = _int8(n, k, group)
    torch.testing.assert_close(int8_linear(x, q, s, bias), F.linear(x, dequantize_int8(q, s), bias))
    p, s4, z4 = _int4(n, k, group)
    torch.testing.assert_close(int4_linear(x, p, s4, z4), F.linear(x, dequantize_int4(p, s4, z4)))
    torch.testing.assert_close(int4_codes_linear(x, unpack_int4(p), s4, z4), F.linear(x, dequantize_int4(p, s4, z4)))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3)])
def test_compiled_multiply_sum_kernels_equal_reference(shape: tuple[int, int]):
    """A batch-1 decode input (one row) takes the multiply-sum form under torch.compile, more rows `F.linear`:
    both give the reference's results."""
    n, k = 40, 64
    q, s = _int8(n, k, 32)
    p, s4, z4 = _int4(n, k, 16, seed=1)
    w, bias = torch.randn(n, k), torch.randn(n)

    codes = unpack_int4(p)

    def all_four(x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        int4 = int4_linear(x, p, s4, z4, bias)
        return int8_linear(x, q, s, bias), int4, int4_codes_linear(x, codes, s4, z4, bias), float_linear(x, w, bias)

    x = torch.randn(*shape, k)  # (B, T, K)
    got = torch.compile(all_four, dynamic=False)(x)
    want = (
        F.linear(x, dequantize_int8(q, s), bias),
        F.linear(x, dequantize_int4(p, s4, z4), bias),
        F.linear(x, dequantize_int4(p, s4, z4), bias),
        F.linear(x, w, bias),
    )
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape == (*shape, n)
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
