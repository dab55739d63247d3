"""The GPT decoder family: GPT-2 (Radford et al. 2019) and its modern variants, all from `GPTConfig`.

Parameter names follow HF GPT-2 (`transformer.wte`, `transformer.h.{i}.attn.c_attn`, ...) with `nn.Linear`
weights (transposed relative to HF's `Conv1D`). Architecture reference: nanoGPT and
"Language Models are Unsupervised Multitask Learners"
(https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from llmlab.models.base import DecoderLM
from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.presets import PRESETS
from llmlab.nn.block import Block
from llmlab.nn.masks import build_attention_mask
from llmlab.nn.norms import build_norm
from llmlab.nn.positions import alibi_slopes, rope_cos_sin, sinusoidal_table


class GPT(DecoderLM):
    """A decoder-only Transformer language model configured by `GPTConfig`.

    Args:
        config: the architecture; `config.validate()` is called first.
    """

    # Module-name groups PEFT targets by role (see llmlab.peft.targets); HF GPT-2 stores them as Conv1D.
    peft_targets = {"query_value": ("c_attn",), "key_value": ("c_attn",), "attention_output": ("attn.c_proj",),
                    "mlp_output": ("mlp.c_proj", "down_proj")}  # fmt: skip
    peft_fan_in_fan_out = True
    module_paths = {"embed_tokens": "transformer.wte", "layers": "transformer.h", "final_norm": "transformer.ln_f"}
    family_name = "gpt"
    config_class = GPTConfig
    presets = PRESETS

    def __init__(self, config: GPTConfig) -> None:
        super().__init__(config)
        c = config
        block = c.block_config()
        modules: dict[str, nn.Module] = {"wte": nn.Embedding(c.vocab_size, c.n_embd)}
        if c.position == "learned":
            modules["wpe"] = nn.Embedding(c.block_size, c.n_embd)
        modules["drop"] = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        modules["h"] = nn.ModuleList(Block(block, layer_idx=i) for i in range(c.n_layer))
        if c.pre_norm:  # post-LN blocks already end with a norm
            modules["ln_f"] = build_norm(c.norm, c.n_embd, c.norm_eps, c.bias)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
        if c.tie_embeddings:  # https://arxiv.org/abs/1608.05859
            self.lm_head.weight = self.transformer.wte.weight
        # Fixed tables are non-persistent buffers: cached once, never saved.
        if c.position == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_table(c.block_size, c.n_embd), persistent=False)
        if c.position == "rope":
            cos, sin = rope_cos_sin(c.block_size, c.head_dim, c.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        if c.position == "alibi":
            self.register_buffer("alibi_slopes", alibi_slopes(c.n_head), persistent=False)
        self.apply(self._init_weights)
        # GPT-2: scale the init of projections into the residual stream by 1/sqrt(2 * n_layer).
        for module in self.modules():
            if getattr(module, "residual_proj", False):
                nn.init.normal_(module.weight, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        self._init_normal(module, std=0.02)

    # ------------------------------------------------------------------ forward (DecoderLM.forward)
    def _embed(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, past: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """Token (+ learned or sinusoidal position) embeddings (B, T, C) after dropout; RoPE (cos, sin) or None."""
        c = self.config
        pos, total = position_ids, past + input_ids.shape[1]
        if total > c.block_size:
            raise ValueError(f"sequence of {total} tokens is longer than block_size={c.block_size}; crop the input")
        x = self.transformer.wte(input_ids)  # (B, T, C)
        if c.position == "learned":
            x = x + self.transformer.wpe(pos)  # (T, C) or (B, T, C)
        elif c.position == "sinusoidal":
            x = x + self.pos_table[pos].to(x.dtype)
        x = self.transformer.drop(x)
        rope = None
        if c.position == "rope":
            cos, sin = self.rope_cos[pos].to(x.dtype), self.rope_sin[pos].to(x.dtype)  # (T, hs) or (B, T, hs)
            if pos.dim() == 2:
                cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs): broadcast over heads
            rope = (cos, sin)
        return x, rope

    def _attention_masks(
        self, t: int, past: int, attention_mask: torch.Tensor | None, x: torch.Tensor
    ) -> dict[str, Any]:
        """The causal / sliding-window / ALiBi mask AND-ed with `attention_mask` (none for linear attention)."""
        c = self.config
        mask_4d = attention_mask is not None and attention_mask.dim() == 4
        if c.attention == "linear":
            if mask_4d:
                raise ValueError("attention='linear' takes only a (B, S) padding attention_mask, not a 4-D mask")
            mask, is_causal = None, False
        else:
            mask, is_causal = build_attention_mask(
                t,
                past + t,
                causal=c.causal,
                window_size=c.window_size if c.attention == "local" else None,
                n_global_tokens=c.n_global_tokens,
                key_padding_mask=attention_mask,
                alibi_slopes=self.alibi_slopes if c.position == "alibi" else None,
                device=x.device,
                dtype=x.dtype,
            )
        return {"attn_mask": mask, "is_causal": is_causal, "key_padding_mask": None if mask_4d else attention_mask}

    # ------------------------------------------------------------------ helpers
    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (tied weights counted once).

        With `exclude_embeddings`, learned position embeddings are not counted, nor the token embedding
        when it is untied (when tied it is also the output layer, as in nanoGPT's count).
        """
        n = super().num_parameters(exclude_embeddings)
        if exclude_embeddings and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n


def count_parameters(config: GPTConfig) -> int:
    """Exact parameter count of `GPT(config)`, computed on the meta device (no memory is allocated)."""
    with torch.device("meta"):
        return GPT(config).num_parameters()


def preset_table() -> list[tuple[str, int]]:
    """(name, parameter count) for every GPT preset, sorted by name."""
    return [(name, count_parameters(PRESETS.get(name))) for name in PRESETS]
