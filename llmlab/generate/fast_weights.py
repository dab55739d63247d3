"""The inference view `FastDecoder` compiles: a Llama forward over a static KV cache with fused projections.

Projections are fused by what the layer holds: a float `nn.Linear`, an int8 layer (`qweight`, `scale`, `bias`
buffers) or an int4 layer (`packed`, `scale`, `zero`, `bias`), in the layouts of `llmlab.compress.kernels`; any
other module (NF4, dynamic int8) is called as it is. Fusing q/k/v
(and gate/up) concatenates those tensors along the output rows, so one matmul reads them all: Ainslie et al.'s
GQA projections (https://arxiv.org/abs/2305.13245) stay separate heads after the split.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.compress.kernels import float_linear, int4_codes_linear, int8_linear, unpack_int4

_LAYOUTS = {"int8": ("qweight", "scale"), "int4": ("packed", "scale", "zero")}


def layout_of(module: nn.Module) -> str | None:
    """'float' (nn.Linear), 'int8', 'int4' (by their buffers), or None (a module `apply_linear` just calls).

    Dynamic int8 layers (int8 activations too: `scheme == "dynamic-int8"`) hold int8 buffers but compute
    differently, so they keep their own forward.
    """
    if isinstance(module, nn.Linear):
        return "float"
    if getattr(module, "scheme", None) == "dynamic-int8":
        return None
    for name, tensors in _LAYOUTS.items():
        if all(isinstance(getattr(module, t, None), torch.Tensor) for t in tensors):
            return name
    return None


def apply_linear(x: torch.Tensor, module: nn.Module) -> torch.Tensor:
    """module(x), with a float `nn.Linear` through `float_linear` (the compiled multiply-sum for one row).

    Quantized layers already call their `llmlab.compress.kernels` function in their own forward.
    """
    if isinstance(module, nn.Linear):
        return float_linear(x, module.weight, module.bias)
    return module(x)


class FusedLinear(nn.Module):
    """Several projections of one input as one: their weight tensors concatenated along the output rows.

    int4 layers are stored unpacked here (`codes`, one 0..15 code per byte: twice the packed bytes), because
    the compiled decode loop over packed nibbles runs ~4x slower than over bytes (see `llmlab.compress.kernels`).
    """

    def __init__(self, kind: str, tensors: dict[str, torch.Tensor], bias: torch.Tensor | None) -> None:
        super().__init__()
        self.kind = kind
        for name, value in tensors.items():
            self.register_buffer(name, value)
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "float":
            return float_linear(x, self.weight, self.bias)
        if self.kind == "int8":
            return int8_linear(x, self.qweight, self.scale, self.bias)
        return int4_codes_linear(x, self.codes, self.scale, self.zero, self.bias)


def fuse_linears(modules: Sequence[nn.Module]) -> nn.Module | None:
    """One `FusedLinear` computing `cat([m(x) for m in modules], -1)`, or None when they cannot be fused."""
    kinds = {layout_of(m) for m in modules}
    if len(kinds) != 1 or None in kinds:
        return None
    kind = kinds.pop()
    names = ("weight",) if kind == "float" else _LAYOUTS[kind]
    parts = {n: [getattr(m, n).detach() for m in modules] for n in names}
    if any(len({p.shape[1:] for p in group}) != 1 for group in parts.values()):  # e.g. different group sizes
        return None
    biases = [getattr(m, "bias", None) for m in modules]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return None
    bias = None if biases[0] is None else torch.cat([b.detach() for b in biases])
    tensors = {n: torch.cat(group) for n, group in parts.items()}
    if kind == "int4":
        tensors["codes"] = unpack_int4(tensors.pop("packed"))
    return FusedLinear(kind, tensors, bias)


def prepare_linear(module: nn.Module) -> nn.Module:
    """The module the fast path runs for one projection: int4 layers unpacked (a `FusedLinear` of one), else itself."""
    if layout_of(module) == "int4":
        return fuse_linears([module]) or module
    return module


class _Projection(nn.Module):
    """x -> the outputs of several projections (fused into one matmul when possible), split by size."""

    def __init__(self, modules: Sequence[nn.Module], fuse: bool) -> None:
        super().__init__()
        self.sizes = [int(m.out_features) for m in modules]
        fused = fuse_linears(modules) if fuse else None
        self.parts = nn.ModuleList([fused] if fused is not None else modules)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if len(self.parts) == 1:
            return list(apply_linear(x, self.parts[0]).split(self.sizes, dim=-1))
        return [apply_linear(x, m) for m in self.parts]


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """RoPE in the rotate-half layout (`llmlab.nn.positions.apply_rope`): x (B, nh, T, hs), cos/sin (B, 1, T, hs)."""
    x1, x2 = x.chunk(2, dim=-1)
    return (x * cos + torch.cat((-x2, x1), dim=-1) * sin).to(x.dtype)


class FastLayer(nn.Module):
    """One Llama decoder layer over a static cache (shares the source layer's norms and weights)."""

    def __init__(self, layer: nn.Module, fuse: bool) -> None:
        super().__init__()
        attn, mlp = layer.self_attn, layer.mlp
        self.n_head, self.n_kv_head, self.head_dim = attn.n_head, attn.n_kv_head, attn.head_dim
        self.input_layernorm, self.post_attention_layernorm = layer.input_layernorm, layer.post_attention_layernorm
        self.qkv = _Projection([attn.q_proj, attn.k_proj, attn.v_proj], fuse)
        self.o_proj, self.down_proj = prepare_linear(attn.o_proj), prepare_linear(mlp.down_proj)
        self.gate_up = _Projection([mlp.gate_proj, mlp.up_proj], fuse)

    def forward(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor,
        keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """x (B, T, C); mask (B, 1, T, S); keys/values (B, nkv, S, hs) written at `slots` (T,)."""
        b, t, _ = x.shape
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_dim
        q, k, v = self.qkv(self.input_layernorm(x))
        q = _rotate(q.view(b, t, nh, hs).transpose(1, 2), *rope)  # (B, nh, T, hs)
        k = _rotate(k.view(b, t, nkv, hs).transpose(1, 2), *rope)  # (B, nkv, T, hs)
        keys.index_copy_(2, slots, k)
        values.index_copy_(2, slots, v.view(b, t, nkv, hs).transpose(1, 2))
        rep = nh // nkv  # grouped queries: the rep query heads of a KV head attend as rep * T rows
        q = q.reshape(b, nkv, rep * t, hs)
        group_mask = mask.unsqueeze(2).expand(b, 1, rep, t, mask.shape[-1]).reshape(b, 1, rep * t, -1)
        y = F.scaled_dot_product_attention(q, keys, values, attn_mask=group_mask)  # (B, nkv, rep * T, hs)
        y = y.view(b, nh, t, hs).transpose(1, 2).reshape(b, t, nh * hs)
        x = x + apply_linear(y, self.o_proj)
        gate, up = self.gate_up(self.post_attention_layernorm(x))
        return x + apply_linear(F.silu(gate) * up, self.down_proj)


class FastLlama(nn.Module):
    """Embedding, `FastLayer`s, final norm and LM head of a Llama, for `FastDecoder` (last-position logits)."""

    def __init__(self, model: nn.Module, fuse: bool = True) -> None:
        super().__init__()
        self.embed_tokens, self.norm, self.lm_head = model.embed_tokens, model.final_norm, prepare_linear(model.lm_head)
        self.layers = nn.ModuleList(FastLayer(layer, fuse) for layer in model.layers)
        self.register_buffer("inv_freq", model.inv_freq.detach().clone(), persistent=False)
        self.dtype = model.final_norm.weight.dtype

    def forward(
        self, ids: torch.Tensor, slots: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
        valid: torch.Tensor, offset: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """ids (B, T) at cache slots (T,) -> logits (B, V) of the last position; keys/values updated in place."""
        x = self.embed_tokens(ids)  # (B, T, C)
        positions = slots[None, :] - offset  # (B, T): padding before a row does not count
        freqs = positions.float()[..., None] * self.inv_freq  # (B, T, hs/2)
        emb = torch.cat((freqs, freqs), dim=-1)[:, None]  # (B, 1, T, hs)
        rope = (emb.cos().to(x.dtype), emb.sin().to(x.dtype))
        key_slots = torch.arange(keys.shape[3], device=ids.device)  # (S,)
        causal = key_slots[None, :] <= slots[:, None]  # (T, S)
        mask = (causal[None] & valid[:, None, :]) | (key_slots[None, :] == slots[:, None])[None]  # (B, T, S)
        mask = mask[:, None]  # (B, 1, T, S); a pad query sees itself only (no all-masked row, no NaN)
        for i, layer in enumerate(self.layers):
            x = layer(x, rope, mask, keys[i], values[i], slots)
        return apply_linear(self.norm(x[:, -1]), self.lm_head)  # (B, V)


def check_supported(model: nn.Module) -> None:
    """ValueError unless `model` is an llmlab Llama the fast path implements (RoPE default/linear/llama3)."""
    config = getattr(model, "config", None)
    if getattr(model, "family_name", None) != "llama" or config is None:
        raise ValueError(
            f"the compiled decoder supports llmlab Llama models, not {type(model).__name__}; use compile=False"
        )
    if config.rope_type == "dynamic":
        raise ValueError("the compiled decoder does not implement dynamic NTK RoPE; use compile=False")
    if config.attention_dropout and model.training:
        raise ValueError("the compiled decoder is for inference: call model.eval() first")
