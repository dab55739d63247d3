"""Multi-head attention with interchangeable backends, GQA/MQA, RoPE, KV cache and cross-attention.

Backends:
- `sdpa`: `F.scaled_dot_product_attention` (fused kernels; the default).
- `eager`: the explicit `softmax(q k^T / sqrt(d) + mask) v`; can return the attention weights.
- `local`: sliding window + global tokens (Longformer); runs the sdpa kernel with the model's window mask.
- `linear`: causal linear attention (Katharopoulos et al., 2020), see `llmlab.nn.linear_attention`.

Heads: multi-head attention (Vaswani et al., https://arxiv.org/abs/1706.03762), grouped-query attention
(GQA, Ainslie et al., https://arxiv.org/abs/2305.13245) with `n_kv_head < n_head`, multi-query attention
(MQA, Shazeer, https://arxiv.org/abs/1911.02150) with `n_kv_head = 1`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.nn.kv_cache import KVCache
from llmlab.nn.linear_attention import linear_attention
from llmlab.nn.positions import apply_rope

ATTENTION_BACKENDS = ("sdpa", "eager", "linear", "local")
# torch >= 2.5: the sdpa kernel maps query head h to key/value head h // n_rep itself (`enable_gqa=True`),
# so the (B, nh, S, hs) copies of `repeat_kv` are not needed. llmlab uses it for one-token decode steps, where
# repeat_kv would copy the whole KV cache at every step; with several queries (training, prefill) torch's CPU
# kernels take a different (non-flash) path under enable_gqa, whose rounding differs by ~1e-5, so there the
# repeat_kv path is kept.
SDPA_HAS_GQA = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(B, nkv, S, hs) -> (B, nkv * n_rep, S, hs); query head h uses key/value head h // n_rep (as HF Llama)."""
    if n_rep == 1:
        return x
    b, nkv, s, hs = x.shape
    return x[:, :, None].expand(b, nkv, n_rep, s, hs).reshape(b, nkv * n_rep, s, hs)


def eager_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    is_causal: bool = False,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Explicit softmax attention; same mask semantics as `F.scaled_dot_product_attention`.

    Args:
        q: (B, nh, T, hs); k, v: (B, nh, S, hs).
        attn_mask: bool (True = attend) or additive float mask broadcastable to (B, nh, T, S).
        is_causal: apply a causal mask aligned to the last T keys.
        dropout_p: dropout on the attention weights.

    Returns:
        y (B, nh, T, hs) and the attention weights (B, nh, T, S) (before dropout).
    """
    t, s = q.shape[2], k.shape[2]
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))  # (B, nh, T, S)
    if is_causal:
        causal = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
        att = att.masked_fill(~causal, float("-inf"))
    if attn_mask is not None:
        att = att.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool else att + attn_mask
    weights = torch.softmax(att.float(), dim=-1).to(q.dtype)
    y = F.dropout(weights, p=dropout_p) @ v if dropout_p > 0 else weights @ v  # (B, nh, T, hs)
    return y, weights


class Attention(nn.Module):
    """Self- or cross-attention.

    Parameter names: with `fused_qkv=True` (GPT-2) one `c_attn` projects to q, k, v and `c_proj` projects
    back; a cross-attention layer has `q_attn` (queries from the decoder) and `c_attn` (keys/values from the
    encoder), as in HF GPT-2. With `fused_qkv=False` the Llama names `q_proj`, `k_proj`, `v_proj`, `o_proj`
    are used.

    Args:
        n_embd: model width C.
        n_head: number of query heads.
        n_kv_head: number of key/value heads (None = n_head; 1 = MQA).
        backend: one of `ATTENTION_BACKENDS`.
        bias: biases in the projections.
        dropout: attention-weight and residual dropout.
        causal: causal (decoder) or bidirectional (encoder) self-attention. Cross-attention is never causal.
        cross: keys/values come from `encoder_hidden_states`.
        fused_qkv: GPT-2 (`c_attn`) or Llama (`q_proj` ...) projections.
        layer_idx: index of this layer in the KV cache.
        head_dim: head size (default n_embd // n_head).
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        n_kv_head: int | None = None,
        *,
        backend: str = "sdpa",
        bias: bool = True,
        dropout: float = 0.0,
        causal: bool = True,
        cross: bool = False,
        fused_qkv: bool = True,
        layer_idx: int = 0,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        if backend not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown attention backend '{backend}'; choose one of: {', '.join(ATTENTION_BACKENDS)}")
        self.n_head = n_head
        self.n_kv_head = n_kv_head or n_head
        if n_head % self.n_kv_head != 0:
            raise ValueError(f"n_head={n_head} must be a multiple of n_kv_head={self.n_kv_head}")
        self.head_dim = head_dim or n_embd // n_head
        self.backend = backend
        self.causal = causal and not cross
        self.cross = cross
        self.fused_qkv = fused_qkv
        self.layer_idx = layer_idx
        self.dropout = dropout
        q_dim, kv_dim = n_head * self.head_dim, self.n_kv_head * self.head_dim
        self.q_dim, self.kv_dim = q_dim, kv_dim
        if fused_qkv:
            if cross:
                self.q_attn = nn.Linear(n_embd, q_dim, bias=bias)
                self.c_attn = nn.Linear(n_embd, 2 * kv_dim, bias=bias)
            else:
                self.c_attn = nn.Linear(n_embd, q_dim + 2 * kv_dim, bias=bias)
            self.c_proj = nn.Linear(q_dim, n_embd, bias=bias)
            self.c_proj.residual_proj = True
        else:
            self.q_proj = nn.Linear(n_embd, q_dim, bias=bias)
            self.k_proj = nn.Linear(n_embd, kv_dim, bias=bias)
            self.v_proj = nn.Linear(n_embd, kv_dim, bias=bias)
            self.o_proj = nn.Linear(q_dim, n_embd, bias=bias)
            self.o_proj.residual_proj = True
        self.resid_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # Prefix tuning (llmlab.peft.prefix) sets this to a callable returning extra (k, v), each
        # (nkv, P, hs) or (B, nkv, P, hs), that every query attends to, or None (the default: no prefix).
        self.prefix_kv: Callable[[], tuple[torch.Tensor, torch.Tensor] | None] | None = None

    def _qkv(
        self, x: torch.Tensor, encoder_hidden_states: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project to q (B, nh, T, hs), k and v (B, nkv, S, hs)."""
        b, t, _ = x.shape
        kv_in = encoder_hidden_states if self.cross else x
        if self.cross and kv_in is None:
            raise ValueError("this model has cross-attention layers: pass encoder_hidden_states (B, S_enc, C)")
        if self.fused_qkv:
            if self.cross:
                q = self.q_attn(x)
                k, v = self.c_attn(kv_in).split(self.kv_dim, dim=2)
            else:
                q, k, v = self.c_attn(x).split([self.q_dim, self.kv_dim, self.kv_dim], dim=2)
        else:
            q, k, v = self.q_proj(x), self.k_proj(kv_in), self.v_proj(kv_in)
        s = kv_in.shape[1]
        q = q.view(b, t, self.n_head, self.head_dim).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(b, s, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, S, hs)
        v = v.view(b, s, self.n_kv_head, self.head_dim).transpose(1, 2)  # (B, nkv, S, hs)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None = None,
        is_causal: bool = False,
        key_padding_mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        kv_cache: KVCache | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attend.

        Args:
            x: (B, T, C) hidden states.
            attn_mask: mask from `llmlab.nn.masks.build_attention_mask` (self-attention only).
            is_causal: use the causal kernel path without a mask tensor.
            key_padding_mask: (B, S) 1/0 padding mask (used by the linear backend).
            rope: (cos, sin) each (T, hs) for the new positions, or None.
            kv_cache: cache to append this layer's keys/values to (self-attention only).
            encoder_hidden_states: (B, S_enc, C) for cross-attention.
            output_attentions: also return the (B, nh, T, S) attention weights (not for `linear`).

        Returns:
            y (B, T, C) and the attention weights or None.
        """
        b, t, _ = x.shape
        q, k, v = self._qkv(x, encoder_hidden_states)
        if self.cross:  # bidirectional over the encoder, no cache, no positions
            attn_mask, is_causal, key_padding_mask = None, False, None
        else:
            if rope is not None:
                cos, sin = rope
                q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            if kv_cache is not None:
                k, v = kv_cache.update(self.layer_idx, k, v)  # (B, nkv, S, hs)
            prefix = self.prefix_kv() if self.prefix_kv is not None else None
            if prefix is not None:
                k, v, attn_mask, is_causal = _prepend_prefix(prefix, k, v, attn_mask, is_causal, t)
        n_rep = self.n_head // self.n_kv_head
        dropout_p = self.dropout if self.training else 0.0
        weights = None
        if self.backend in ("sdpa", "local") and not output_attentions and n_rep > 1 and t == 1 and SDPA_HAS_GQA:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal, enable_gqa=True
            )  # k, v stay (B, nkv, S, hs)
            return self._out(y, b, t), None
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, nh, S, hs)
        if self.backend == "linear":
            if output_attentions:
                raise ValueError("output_attentions is not available with attention='linear'; use 'eager' or 'sdpa'")
            y = linear_attention(q, k, v, causal=self.causal, key_padding_mask=key_padding_mask)
        elif self.backend == "eager" or output_attentions:
            y, weights = eager_attention(q, k, v, attn_mask, is_causal, dropout_p)
        else:  # sdpa, local
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal)
        return self._out(y, b, t), weights

    def _out(self, y: torch.Tensor, b: int, t: int) -> torch.Tensor:
        """Merge the heads of y (B, nh, T, hs) and project back to (B, T, C)."""
        y = y.transpose(1, 2).contiguous().view(b, t, self.q_dim)  # (B, T, nh * hs)
        y = self.c_proj(y) if self.fused_qkv else self.o_proj(y)
        return self.resid_dropout(y)


def _prepend_prefix(
    prefix: tuple[torch.Tensor, torch.Tensor],
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None,
    is_causal: bool,
    q_len: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """Prepend P prefix keys/values (prefix tuning, Li & Liang 2021, https://arxiv.org/abs/2101.00190).

    Every query may attend to all P prefix positions; the mask over the S real keys is kept, so this also
    works under KV-cache decoding (the prefix is not cached, it is prepended at every step).

    Args:
        prefix: (k_p, v_p), each (nkv, P, hs) or (B, nkv, P, hs).
        k, v: (B, nkv, S, hs) keys/values of the cached + new tokens.
        attn_mask: bool (True = attend) or additive float mask (1|B, 1|nh, T, S), or None.
        is_causal: whether the causal kernel path was to be used (turned into an explicit mask here).
        q_len: number of queries T.

    Returns:
        k, v (B, nkv, P + S, hs), the mask extended to (.., T, P + S) (or None), and is_causal=False.
    """
    b, s = k.shape[0], k.shape[2]
    k_p, v_p = (p.to(k.dtype).expand(b, *p.shape[-3:]) for p in prefix)  # (B, nkv, P, hs)
    n_prefix = k_p.shape[2]
    if attn_mask is None and is_causal:
        attn_mask = torch.ones(q_len, s, dtype=torch.bool, device=k.device).tril(diagonal=s - q_len)[None, None]
    if attn_mask is not None:
        shape = (*attn_mask.shape[:-1], n_prefix)
        if attn_mask.dtype == torch.bool:
            pad = torch.ones(shape, dtype=torch.bool, device=attn_mask.device)
        else:
            pad = torch.zeros(shape, dtype=attn_mask.dtype, device=attn_mask.device)
        attn_mask = torch.cat([pad, attn_mask], dim=-1)  # (.., T, P + S)
    return torch.cat([k_p, k], dim=2), torch.cat([v_p, v], dim=2), attn_mask, False
