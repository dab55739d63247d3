"""Quantized layers that *run* on packed weights: `Int8Linear`, `Int4Linear`, `NF4Linear`, `DynamicInt8Linear`,
and `QuantEmbedding` (which can share the buffers of a tied LM head).

Layouts (N = out features, K = in features, g = group size, G = K // g; see `llmlab.compress.kernels`):

    int8   w = q * scale[group]             q in -127..127, scale = absmax(group) / 127       (per-channel: g = K)
    int4   w = q * scale[group] + zero      q in 0..15 packed two per byte
           symmetric  (llama.cpp Q4_0): scale = m / -8 where m is the signed value of largest |w|, zero = -8 * scale
           asymmetric (zero-point, Q4_1): scale = (max - min) / 15, zero = min
    nf4    QLoRA's NormalFloat-4 (Dettmers et al. 2023, https://arxiv.org/abs/2305.14314): 16 quantiles of N(0, 1)
           times a per-block absmax, packed by `llmlab.peft.qlora.quantize_nf4`.
    dynamic-int8: the int8 per-channel weight layout; activations are quantized per token at run time,
           x ~ qx * sx with sx = absmax(token) / 127, and y = (qx @ q^T) * sx * scale in an int32 matmul
           (`torch._int_mm`), the scheme of LLM.int8() without its outlier split (Dettmers et al. 2022,
           https://arxiv.org/abs/2208.07339).

Scales and zeros are stored in float16 (as llama.cpp does); a scale is rounded *up* to float16 so that no
weight falls outside the representable range. Every layer keeps `in_features`, `out_features`, `group_size`
and a float `bias` buffer (or None), and offers `from_linear`, `dequantize()` (the (N, K) float32 weight it
computes with) and a `forward` through `llmlab.compress.kernels`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.compress.kernels import dequantize_int4, dequantize_int8, int4_linear, int8_linear, pack_int4
from llmlab.peft.qlora import dequantize_nf4, quantize_nf4

INT4_GROUP_SIZES = (32, 64, 128)
_TINY = 2.0**-24  # the smallest positive float16 (a subnormal): scales never underflow to 0


def f16_round_up(x: torch.Tensor) -> torch.Tensor:
    """float32 -> float16, rounded towards +inf in magnitude so that |stored| >= |x| (x >= 0 here)."""
    h = x.clamp_min(_TINY).to(torch.float16)
    return torch.where(h.float() < x, torch.nextafter(h, torch.full_like(h, float("inf"))), h)


def check_group_size(k: int, group_size: int, name: str) -> None:
    """ValueError (one line, naming the layer) when `group_size` does not divide the K = `k` input features."""
    if group_size <= 0 or k % group_size:
        raise ValueError(
            f"group size {group_size} does not divide the {k} input features of {name}; "
            "choose a group size that divides it (or skip that layer)"
        )


def _grouped(w: torch.Tensor, group_size: int) -> torch.Tensor:
    """(N, K) -> (N, G, g) float32 view by groups."""
    n, k = w.shape
    return w.detach().float().reshape(n, k // group_size, group_size)


def quantize_int8(w: torch.Tensor, group_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Round-to-nearest symmetric int8: (N, K) float -> qweight (N, K) int8, scale (N, G) float16."""
    g = group_size or w.shape[1]
    wg = _grouped(w, g)  # (N, G, g)
    scale = f16_round_up(wg.abs().amax(dim=2) / 127.0)  # (N, G)
    q = torch.round(wg / scale.float()[:, :, None]).clamp(-127, 127).to(torch.int8)
    return q.reshape(w.shape), scale


def int4_params(wg: torch.Tensor, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-group (scale, zero) float16 of grouped weights (..., g): the int4 rules of the module docstring."""
    if symmetric:
        idx = wg.abs().argmax(dim=-1, keepdim=True)
        signed_max = wg.gather(-1, idx).squeeze(-1)  # the value of largest magnitude, with its sign
        magnitude = f16_round_up(signed_max.abs() / 8.0).float()
        scale = torch.where(signed_max > 0, -magnitude, magnitude).to(torch.float16)  # maps signed_max to q = 0
        return scale, (-8.0 * scale.float()).to(torch.float16)
    lo, hi = wg.amin(dim=-1), wg.amax(dim=-1)
    zero = lo.to(torch.float16)
    scale = f16_round_up((hi - zero.float()) / 15.0)
    return scale, zero


def int4_codes(wg: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    """q = clamp(round((w - zero) / scale), 0, 15) for grouped weights (..., g) and per-group scale/zero (...)."""
    s, z = scale.float()[..., None], zero.float()[..., None]
    return torch.round((wg - z) / s).clamp(0, 15)


def quantize_int4(
    w: torch.Tensor, group_size: int, symmetric: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest int4: (N, K) float -> packed (N, K // 2) uint8, scale (N, G), zero (N, G) float16."""
    wg = _grouped(w, group_size)  # (N, G, g)
    scale, zero = int4_params(wg, symmetric)
    q = int4_codes(wg, scale, zero).reshape(w.shape)
    return pack_int4(q), scale, zero


def apply_keeping_layout(
    module: nn.Module, fn: Callable[[torch.Tensor], torch.Tensor], layout: tuple[str, ...]
) -> None:
    """`Module._apply` for the packed buffers named `layout`: they follow device moves, never dtype casts.

    `model.to(torch.bfloat16)` must not turn float16 scales into bfloat16 (or float32) copies; the other tensors
    (the float `bias`) are converted as usual by the caller.
    """
    for name in layout:
        buf = module._buffers.get(name)
        if buf is None:
            continue
        device = fn(torch.empty(0, dtype=torch.float16, device=buf.device)).device  # where `fn` sends tensors
        if device != buf.device:
            module._buffers[name] = buf.to(device)


class _QuantLinear(nn.Module):
    """Shared parts: sizes, the float bias buffer, the repr."""

    scheme = ""

    def __init__(self, in_features: int, out_features: int, group_size: int, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    layout: tuple[str, ...] = ()  # the packed buffers (kept in their dtypes by `.to(dtype)`)

    def dequantize(self) -> torch.Tensor:
        """The (N, K) float32 weight this layer computes with."""
        raise NotImplementedError

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
        kept = {name: self._buffers.pop(name) for name in self.layout if name in self._buffers}
        super()._apply(fn, recurse)  # the bias
        self._buffers.update(kept)
        apply_keeping_layout(self, fn, self.layout)
        return self

    def extra_repr(self) -> str:
        return (
            f"{self.scheme}, in_features={self.in_features}, out_features={self.out_features}, "
            f"group_size={self.group_size}, bias={self.bias is not None}"
        )


class Int8Linear(_QuantLinear):
    """Weight-only int8 linear layer: buffers `qweight` (N, K) int8, `scale` (N, G) float16, `bias`."""

    scheme = "int8"
    layout = ("qweight", "scale")

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None) -> None:
        n, k = qweight.shape
        super().__init__(k, n, k // scale.shape[1], bias)
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int | None = None, name: str = "the layer") -> Int8Linear:
        """Quantize `linear` (round to nearest); `group_size` None = per output channel (g = K)."""
        check_group_size(linear.in_features, group_size or linear.in_features, name)
        qweight, scale = quantize_int8(linear.weight, group_size)
        return cls(qweight, scale, linear.bias)

    def dequantize(self) -> torch.Tensor:
        return dequantize_int8(self.qweight, self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N)."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return int8_linear(x, self.qweight, self.scale, bias)


class Int4Linear(_QuantLinear):
    """Weight-only int4 group-wise linear layer: buffers `packed` (N, K // 2) uint8, `scale`, `zero` (N, G) f16."""

    scheme = "int4"
    layout = ("packed", "scale", "zero")

    def __init__(
        self, packed: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bias: torch.Tensor | None = None
    ) -> None:
        n, half = packed.shape
        super().__init__(2 * half, n, 2 * half // scale.shape[1], bias)
        self.register_buffer("packed", packed)
        self.register_buffer("scale", scale)
        self.register_buffer("zero", zero)

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group_size: int = 64, symmetric: bool = True, name: str = "the layer"
    ) -> Int4Linear:
        """Quantize `linear` group-wise (round to nearest; GPTQ: `llmlab.compress.quant.gptq`)."""
        check_group_size(linear.in_features, group_size, name)
        return cls(*quantize_int4(linear.weight, group_size, symmetric), linear.bias)

    def dequantize(self) -> torch.Tensor:
        return dequantize_int4(self.packed, self.scale, self.zero)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N)."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return int4_linear(x, self.packed, self.scale, self.zero, bias)


class NF4Linear(_QuantLinear):
    """QLoRA's NF4 weight (no adapter): buffers `packed` (N * K // 2,) uint8, `absmax` (N * K // g,) float32."""

    scheme = "nf4"
    layout = ("packed", "absmax")

    def __init__(
        self, packed: torch.Tensor, absmax: torch.Tensor, in_features: int, out_features: int,
        group_size: int, bias: torch.Tensor | None = None,
    ) -> None:  # fmt: skip
        super().__init__(in_features, out_features, group_size, bias)
        self.register_buffer("packed", packed)
        self.register_buffer("absmax", absmax)

    @classmethod
    def from_linear(cls, linear: nn.Linear, group_size: int = 64, name: str = "the layer") -> NF4Linear:
        """Quantize `linear` to NF4 in blocks of `group_size` weights along each row."""
        check_group_size(linear.in_features, group_size, name)
        packed, absmax = quantize_nf4(linear.weight, group_size)
        return cls(packed, absmax, linear.in_features, linear.out_features, group_size, linear.bias)

    def dequantize(self) -> torch.Tensor:
        shape = torch.Size((self.out_features, self.in_features))
        return dequantize_nf4(self.packed, self.absmax, shape, self.group_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N): the NF4 weight dequantized block by block, then one matmul."""
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantize().to(x.dtype), bias)


def quantize_per_token(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per row: (M, K) float -> (M, K) int8 and (M, 1) float32 scales (x ~ q * scale)."""
    scale = x.detach().float().abs().amax(dim=1, keepdim=True).clamp_min(1e-12) / 127.0
    return torch.round(x.float() / scale).clamp(-127, 127).to(torch.int8), scale


class DynamicInt8Linear(Int8Linear):
    """Int8 weights (per channel) and int8 activations (per token, computed at run time), int32 accumulation."""

    scheme = "dynamic-int8"

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group_size: int | None = None, name: str = "the layer"
    ) -> DynamicInt8Linear:
        """Quantize `linear` per output channel (`group_size` must be None or K: one scale per row)."""
        if group_size not in (None, linear.in_features):
            raise ValueError(f"dynamic-int8 quantizes {name} per output channel; do not pass a group size")
        qweight, scale = quantize_int8(linear.weight)
        return cls(qweight, scale, linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., K) -> (..., N): (qx (M, K) @ q^T (K, N)) in int32, times sx (M, 1) * scale (1, N)."""
        flat = x.reshape(-1, self.in_features)  # (M, K)
        qx, sx = quantize_per_token(flat)
        if flat.device.type == "cpu":
            acc = torch._int_mm(qx, self.qweight.t()).float()  # (M, N) int32 -> float32
        else:  # _int_mm has shape rules on CUDA (M > 16, K and N multiples of 8): the same product in float
            acc = qx.float() @ self.qweight.float().t()
        y = acc * sx * self.scale.float().t()
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)


class QuantEmbedding(nn.Module):
    """A token embedding stored as int8 or int4 rows (the int8 / int4 layouts, one row per token).

    Rows are dequantized on lookup. Built `from_linear(lm_head)` for a tied LM head, it holds the *same*
    tensors as that head (one quantized copy in memory), and `tied` is True.
    """

    def __init__(self, source: Int8Linear | Int4Linear, tied: bool) -> None:
        super().__init__()
        self.num_embeddings, self.embedding_dim = source.out_features, source.in_features
        self.kind = "int4" if isinstance(source, Int4Linear) else "int8"
        self.group_size, self.tied = source.group_size, tied
        self.layout = ("packed", "scale", "zero") if self.kind == "int4" else ("qweight", "scale")
        for name in self.layout:
            self.register_buffer(name, getattr(source, name))

    @classmethod
    def from_linear(cls, head: Int8Linear | Int4Linear) -> QuantEmbedding:
        """The embedding that shares the quantized weight of a tied LM head."""
        return cls(head, tied=True)

    @classmethod
    def from_embedding(
        cls, embedding: nn.Embedding, kind: str, group_size: int | None, symmetric: bool = True
    ) -> QuantEmbedding:
        """Quantize an (untied) embedding table to `kind` "int8" or "int4"."""
        as_linear = nn.Linear(embedding.embedding_dim, embedding.num_embeddings, bias=False, device="meta")
        as_linear.weight = embedding.weight
        if kind == "int4":
            return cls(Int4Linear.from_linear(as_linear, group_size or 64, symmetric, "the embedding"), tied=False)
        return cls(Int8Linear.from_linear(as_linear, group_size, "the embedding"), tied=False)

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> nn.Module:
        apply_keeping_layout(self, fn, self.layout)
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (...) -> (..., C) float32."""
        flat = ids.reshape(-1)
        if self.kind == "int4":
            rows = dequantize_int4(self.packed[flat], self.scale[flat], self.zero[flat])
        else:
            rows = dequantize_int8(self.qweight[flat], self.scale[flat])
        return rows.view(*ids.shape, self.embedding_dim)

    def extra_repr(self) -> str:
        return (
            f"{self.kind}, num_embeddings={self.num_embeddings}, embedding_dim={self.embedding_dim}, "
            f"group_size={self.group_size}, tied={self.tied}"
        )


QUANT_LINEAR_CLASSES: dict[str, type[_QuantLinear]] = {
    cls.__name__: cls for cls in (Int8Linear, Int4Linear, NF4Linear, DynamicInt8Linear)
}
