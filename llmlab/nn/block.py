"""The Transformer block: attention + (cross-attention) + feed-forward with residuals, pre- or post-norm.

Pre-norm (GPT-2, Xiong et al. https://arxiv.org/abs/2002.04745): `x = x + f(norm(x))`.
Post-norm (original Transformer, https://arxiv.org/abs/1706.03762): `x = norm(x + f(x))`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmlab.nn.attention import Attention
from llmlab.nn.mlp import build_mlp
from llmlab.nn.moe import MoE
from llmlab.nn.norms import build_norm


@dataclass(frozen=True)
class BlockConfig:
    """The architecture of one Transformer layer (a family's config builds it once: `config.block_config()`).

    Attributes:
        n_embd: width C.
        n_head: query heads.
        n_kv_head: key/value heads (None = n_head).
        attention: attention backend name.
        norm: 'layernorm' or 'rmsnorm'.
        norm_eps: norm epsilon.
        pre_norm: pre-LN (True) or post-LN (False).
        mlp: 'gelu', 'gelu_exact' or 'swiglu'.
        mlp_hidden: hidden size of the MLP (of each expert with MoE); None = 4 * n_embd.
        moe_num_experts: 0 for a dense MLP, else the number of experts.
        moe_top_k: experts per token.
        bias: biases in linear layers and norms.
        dropout: dropout probability.
        causal: causal self-attention.
        cross_attention: add a cross-attention sub-layer over `encoder_hidden_states`.
        fused_qkv: GPT-2 fused `c_attn` (True) or Llama-style separate projections.
    """

    n_embd: int
    n_head: int
    n_kv_head: int | None = None
    attention: str = "sdpa"
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    pre_norm: bool = True
    mlp: str = "gelu"
    mlp_hidden: int | None = None
    moe_num_experts: int = 0
    moe_top_k: int = 2
    bias: bool = True
    dropout: float = 0.0
    causal: bool = True
    cross_attention: bool = False
    fused_qkv: bool = True


class Block(nn.Module):
    """One Transformer layer with GPT-2 parameter names (`ln_1`, `attn`, `ln_cross_attn`, `crossattention`,
    `ln_2`, `mlp`).

    Args:
        config: the layer's architecture.
        layer_idx: index in the KV cache.
    """

    def __init__(self, config: BlockConfig, layer_idx: int = 0) -> None:
        super().__init__()
        c = config
        hidden = c.mlp_hidden or 4 * c.n_embd
        self.pre_norm = c.pre_norm
        attn_kw = dict(bias=c.bias, dropout=c.dropout, fused_qkv=c.fused_qkv, layer_idx=layer_idx)
        self.ln_1 = build_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
        self.attn = Attention(c.n_embd, c.n_head, c.n_kv_head, backend=c.attention, causal=c.causal, **attn_kw)
        self.has_cross = c.cross_attention
        if c.cross_attention:
            self.ln_cross_attn = build_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
            cross_backend = "sdpa" if c.attention == "local" else c.attention
            self.crossattention = Attention(
                c.n_embd, c.n_head, c.n_kv_head, backend=cross_backend, cross=True, **attn_kw
            )
        self.ln_2 = build_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
        self.is_moe = c.moe_num_experts > 0
        if self.is_moe:
            self.mlp = MoE(c.n_embd, hidden, c.moe_num_experts, c.moe_top_k, kind=c.mlp, bias=c.bias, dropout=c.dropout)
        else:
            self.mlp = build_mlp(c.mlp, c.n_embd, hidden, bias=c.bias, dropout=c.dropout)

    def forward(
        self, x: torch.Tensor, *, encoder_hidden_states: torch.Tensor | None = None, **attn_inputs: Any
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """x (B, T, C) -> (x (B, T, C), self-attention weights or None, MoE aux loss or None).

        `attn_inputs` are the self-attention's keyword arguments, passed through to `Attention.forward`
        (`attn_mask`, `is_causal`, `key_padding_mask`, `rope`, `kv_cache`, `output_attentions`);
        `encoder_hidden_states` (B, S_enc, C) feed the cross-attention.
        """
        aux = None
        if self.pre_norm:
            a, weights = self.attn(self.ln_1(x), **attn_inputs)
            x = x + a
            if self.has_cross:
                x = x + self.crossattention(self.ln_cross_attn(x), encoder_hidden_states=encoder_hidden_states)[0]
            h = self.ln_2(x)
            if self.is_moe:
                h, aux = self.mlp(h)
            else:
                h = self.mlp(h)
            x = x + h
        else:
            a, weights = self.attn(x, **attn_inputs)
            x = self.ln_1(x + a)
            if self.has_cross:
                c = self.crossattention(x, encoder_hidden_states=encoder_hidden_states)[0]
                x = self.ln_cross_attn(x + c)
            if self.is_moe:
                h, aux = self.mlp(x)
            else:
                h = self.mlp(x)
            x = self.ln_2(x + h)
        return x, weights, aux
