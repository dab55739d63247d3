"""The quantized layers: layouts, error bounds, each module against `F.linear` on its own dequantized weight."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llmlab.compress.kernels import dequantize_int4, pack_int4, unpack_int4
from llmlab.compress.quant import DynamicInt8Linear, Int4Linear, Int8Linear, NF4Linear, QuantEmbedding
from llmlab.compress.quant.linear import quantize_int4, quantize_int8
from llmlab.peft.qlora import dequantize_nf4, quantize_nf4


def _linear(n: int = 48, k: int = 128, bias: bool = True, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    lin = nn.Linear(k, n, bias=bias)
    with torch.no_grad():
        lin.weight.normal_(0, 0.05)
        lin.weight[0, 3] = 0.9  # an outlier
    return lin


def test_int4_pack_round_trip_and_nibble_order() -> None:
    q = torch.randint(0, 16, (5, 64), dtype=torch.uint8)
    packed = pack_int4(q)
    assert packed.shape == (5, 32) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), q)
    assert int(packed[0, 0]) == int(q[0, 0]) | (int(q[0, 1]) << 4)  # column 2i low nibble, 2i + 1 high


@pytest.mark.parametrize("group_size", [None, 32])
def test_int8_error_is_at_most_half_a_step(group_size: int | None) -> None:
    w = _linear().weight
    q, scale = quantize_int8(w, group_size)
    g = group_size or w.shape[1]
    step = scale.float().repeat_interleave(g, dim=1)  # (N, K)
    err = (q.float() * step - w).abs()
    assert q.dtype == torch.int8 and scale.dtype == torch.float16 and scale.shape == (48, 128 // g)
    assert bool((err <= step / 2 + 1e-7).all())


def test_int4_error_bounds_and_constant_rows() -> None:
    w = _linear().weight.detach().clone()
    w[1] = 0.5  # constant rows (float16-representable) come back exactly with the min/max rule
    w[2] = -1.25
    packed, scale, zero = quantize_int4(w, 32, symmetric=False)
    deq = dequantize_int4(packed, scale, zero)
    step = scale.float().abs().repeat_interleave(32, dim=1)
    assert torch.equal(deq[1], w[1]) and torch.equal(deq[2], w[2])
    assert bool(((deq - w).abs() <= step / 2 + 1e-6).all())  # asymmetric: half a step everywhere
    packed, scale, zero = quantize_int4(w, 32, symmetric=True)
    assert torch.equal(zero.float(), -8 * scale.float())  # the Q4_0 layout
    deq = dequantize_int4(packed, scale, zero)
    step = scale.float().abs().repeat_interleave(32, dim=1)
    assert bool(((deq - w).abs() <= step + 1e-6).all())  # symmetric: one level is lost at the far end
    assert float((deq - w).abs().mean()) < float(step.mean()) / 3


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().norm() / b.detach().norm())


@pytest.mark.parametrize(
    ("build", "bound"),
    [
        (lambda lin: Int8Linear.from_linear(lin), 0.02),
        (lambda lin: Int8Linear.from_linear(lin, group_size=64), 0.02),
        (lambda lin: Int4Linear.from_linear(lin, 32, symmetric=True), 0.15),
        (lambda lin: Int4Linear.from_linear(lin, 128, symmetric=False), 0.3),
        (lambda lin: NF4Linear.from_linear(lin, 64), 0.15),
    ],
    ids=["int8", "int8-g64", "int4-g32", "int4-g128-asym", "nf4"],
)
def test_module_computes_with_its_dequantized_weight(build, bound: float) -> None:
    lin = _linear()
    q = build(lin)
    x = torch.randn(3, 5, 128)
    expected = F.linear(x, q.dequantize(), lin.bias)
    torch.testing.assert_close(q(x), expected, rtol=1e-5, atol=1e-5)
    assert _relative_error(q(x), lin(x)) < bound  # and it is close to the float layer
    assert "in_features=128, out_features=48" in repr(q) and q.scheme in repr(q)


def test_nf4_uses_qlora_packing() -> None:
    lin = _linear(bias=False)
    q = NF4Linear.from_linear(lin, 64)
    packed, absmax = quantize_nf4(lin.weight, 64)
    assert torch.equal(q.packed, packed) and torch.equal(q.absmax, absmax)
    torch.testing.assert_close(q.dequantize(), dequantize_nf4(packed, absmax, lin.weight.shape, 64))


def test_dynamic_int8_matches_the_fake_quantized_product() -> None:
    lin = _linear()
    q = DynamicInt8Linear.from_linear(lin)
    assert q.qweight.shape == (48, 128) and q.scale.shape == (48, 1)
    for m in (1, 7, 33):  # small and large row counts (torch._int_mm)
        x = torch.randn(m, 128)
        sx = x.abs().amax(dim=1, keepdim=True) / 127
        fake = F.linear(torch.round(x / sx).clamp(-127, 127) * sx, q.dequantize(), lin.bias)
        torch.testing.assert_close(q(x), fake, rtol=1e-4, atol=1e-4)
        assert _relative_error(q(x), lin(x)) < 0.03
    assert q(torch.randn(2, 3, 128)).shape == (2, 3, 48)


def test_group_size_must_divide_the_inputs() -> None:
    with pytest.raises(ValueError, match="group size 48 does not divide the 128 input features of blk.q"):
        Int4Linear.from_linear(_linear(), 48, name="blk.q")


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_quant_embedding_shares_a_tied_head_and_looks_up_rows(kind: str) -> None:
    emb = nn.Embedding(40, 64)
    head = nn.Linear(64, 40, bias=False)
    head.weight = emb.weight
    qhead = Int8Linear.from_linear(head) if kind == "int8" else Int4Linear.from_linear(head, 32)
    qemb = QuantEmbedding.from_linear(qhead)
    for name, buf in qemb.named_buffers():
        assert buf is getattr(qhead, name)  # one quantized copy in memory
    ids = torch.tensor([[0, 5, 39], [7, 7, 1]])
    torch.testing.assert_close(qemb(ids), qhead.dequantize()[ids])
    untied = QuantEmbedding.from_embedding(emb, kind, 32 if kind == "int4" else None)
    assert not untied.tied and (untied(ids) - emb(ids)).abs().max() < 0.5
    assert f"{kind}, num_embeddings=40, embedding_dim=64" in repr(qemb)
