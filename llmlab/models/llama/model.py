"""The Llama decoder family (Touvron et al. 2023, https://arxiv.org/abs/2302.13971), built from `llmlab.nn`.

A Llama layer is a pre-norm Transformer block with
- RMSNorm instead of LayerNorm (Zhang & Sennrich 2019, https://arxiv.org/abs/1910.07467),
- rotary position embeddings on queries and keys (RoPE, https://arxiv.org/abs/2104.09864), no learned positions,
- a SwiGLU feed-forward network (Shazeer 2020, https://arxiv.org/abs/2002.05202),
- grouped-query attention (GQA, Ainslie et al. 2023, https://arxiv.org/abs/2305.13245) in Llama-2-70B and later,
- no biases.

Parameter names are exactly Hugging Face `LlamaForCausalLM`'s (`model.embed_tokens`,
`model.layers.{i}.self_attn.q_proj`, `model.layers.{i}.mlp.gate_proj`, `model.norm`, `lm_head`), so HF
checkpoints load without renaming:

    x = embed_tokens(ids)                                   # (B, T, C)
    for layer in layers:
        x = x + self_attn(input_layernorm(x), rope)         # GQA attention with RoPE on q, k
        x = x + mlp(post_attention_layernorm(x))            # SwiGLU
    logits = lm_head(norm(x))                               # (B, T, V)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llmlab.models.base import DecoderLM
from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.presets import PRESETS
from llmlab.models.llama.rope import rope_cos_sin_at, rope_inv_freq
from llmlab.nn.attention import Attention
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.masks import build_attention_mask
from llmlab.nn.mlp import SwiGLUMLP
from llmlab.nn.norms import RMSNorm


class LlamaDecoderLayer(nn.Module):
    """One pre-norm Llama layer: `x + attn(rmsnorm(x))`, then `x + swiglu(rmsnorm(x))`.

    Args:
        config: the model configuration.
        layer_idx: index of this layer in the KV cache.
    """

    def __init__(self, config: LlamaConfig, layer_idx: int) -> None:
        super().__init__()
        c = config
        self.input_layernorm = RMSNorm(c.hidden_size, eps=c.rms_norm_eps)
        self.self_attn = Attention(
            c.hidden_size,
            c.num_attention_heads,
            c.kv_heads,
            backend=c.attention,
            bias=c.attention_bias,
            dropout=c.attention_dropout,
            fused_qkv=False,  # Llama names: q_proj, k_proj, v_proj, o_proj
            layer_idx=layer_idx,
            head_dim=c.resolved_head_dim,
        )
        self.post_attention_layernorm = RMSNorm(c.hidden_size, eps=c.rms_norm_eps)
        self.mlp = SwiGLUMLP(c.hidden_size, c.intermediate_size, bias=c.mlp_bias)

    def forward(
        self,
        x: torch.Tensor,
        *,
        attn_mask: torch.Tensor | None,
        is_causal: bool,
        rope: tuple[torch.Tensor, torch.Tensor],
        kv_cache: KVCache | None,
        output_attentions: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        """x (B, T, C) -> (x (B, T, C), attention weights (B, nh, T, S) or None, no MoE aux loss)."""
        a, weights = self.self_attn(
            self.input_layernorm(x),
            attn_mask=attn_mask,
            is_causal=is_causal,
            rope=rope,
            kv_cache=kv_cache,
            output_attentions=output_attentions,
        )
        x = x + a
        x = x + self.mlp(self.post_attention_layernorm(x))
        return x, weights, None


class LlamaModel(nn.Module):
    """The decoder stack without the output layer (HF `LlamaModel`): embeddings, layers, final RMSNorm."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class Llama(DecoderLM):
    """A Llama-architecture causal language model configured by `LlamaConfig`.

    Args:
        config: the architecture; `config.validate()` is called first.
    """

    # Module-name groups PEFT targets by role (see llmlab.peft.targets).
    peft_targets = {"query_value": ("q_proj", "v_proj"), "key_value": ("k_proj", "v_proj"),
                    "attention_output": ("o_proj",), "mlp_output": ("down_proj",)}  # fmt: skip
    peft_fan_in_fan_out = False
    loss_in_float32 = True
    module_paths = {"embed_tokens": "model.embed_tokens", "layers": "model.layers", "final_norm": "model.norm"}
    family_name = "llama"
    config_class = LlamaConfig
    presets = PRESETS

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:  # https://arxiv.org/abs/1608.05859
            self.lm_head.weight = self.model.embed_tokens.weight
        # RoPE frequencies: a fixed, non-persistent buffer (recomputed for long inputs with dynamic scaling).
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        self._init_normal(module, std=self.config.initializer_range)

    # ------------------------------------------------------------------ forward (DecoderLM.forward)
    def _embed(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, past: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Token embeddings (B, T, C) and the RoPE (cos, sin) of `position_ids`."""
        c = self.config
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        inv_freq = self.inv_freq
        t = input_ids.shape[1]
        if c.rope_type == "dynamic" and past + t > c.max_position_embeddings:
            inv_freq = rope_inv_freq(c, past + t).to(x.device)  # NTK: a larger base for longer inputs
        cos, sin = rope_cos_sin_at(inv_freq, position_ids)  # (T, hs) or (B, 1, T, hs)
        return x, (cos.to(x.dtype), sin.to(x.dtype))

    def _attention_masks(
        self, t: int, past: int, attention_mask: torch.Tensor | None, x: torch.Tensor
    ) -> dict[str, Any]:
        """The causal mask AND-ed with `attention_mask`."""
        mask, is_causal = build_attention_mask(
            t, past + t, causal=True, key_padding_mask=attention_mask, device=x.device, dtype=x.dtype
        )
        return {"attn_mask": mask, "is_causal": is_causal}
