"""The GPT decoder family: GPT-2 (Radford et al. 2019) and its modern variants, all from `GPTConfig`.

Parameter names follow HF GPT-2 (`transformer.wte`, `transformer.h.{i}.attn.c_attn`, ...) with `nn.Linear`
weights (transposed relative to HF's `Conv1D`). Architecture reference: nanoGPT and
"Language Models are Unsupervised Multitask Learners"
(https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.checkpoint_io import atomic_write, load_safetensors, read_model_folder, skip_weight_init
from llmlab.models.checkpoint_io import load_state_dict_checked as _load_checked
from llmlab.models.gpt.config import GPTConfig
from llmlab.nn.block import Block
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.masks import build_attention_mask
from llmlab.nn.norms import build_norm
from llmlab.nn.outputs import ModelOutput, check_logits_to_keep
from llmlab.nn.positions import alibi_slopes, rope_cos_sin, sinusoidal_table

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"


class GPT(nn.Module):
    """A decoder-only Transformer language model configured by `GPTConfig`.

    Args:
        config: the architecture; `config.validate()` is called first.
    """

    # Module-name groups PEFT targets by role (see llmlab.peft.targets); HF GPT-2 stores them as Conv1D.
    peft_targets = {"query_value": ("c_attn",), "key_value": ("c_attn",), "attention_output": ("attn.c_proj",),
                    "mlp_output": ("mlp.c_proj", "down_proj")}  # fmt: skip
    peft_fan_in_fan_out = True

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        modules: dict[str, nn.Module] = {"wte": nn.Embedding(c.vocab_size, c.n_embd)}
        if c.position == "learned":
            modules["wpe"] = nn.Embedding(c.block_size, c.n_embd)
        modules["drop"] = nn.Dropout(c.dropout) if c.dropout > 0 else nn.Identity()
        modules["h"] = nn.ModuleList(
            Block(
                c.n_embd,
                c.n_head,
                c.n_kv_head,
                attention=c.attention,
                norm=c.norm,
                norm_eps=c.norm_eps,
                pre_norm=c.pre_norm,
                mlp=c.mlp,
                mlp_hidden=c.hidden_size,
                moe_num_experts=c.moe_num_experts,
                moe_top_k=c.moe_top_k,
                bias=c.bias,
                dropout=c.dropout,
                causal=c.causal,
                cross_attention=c.cross_attention,
                layer_idx=i,
            )
            for i in range(c.n_layer)
        )
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

    # Structural accessors, the same on every family: PEFT, heads and decoding name these, never a family's modules.
    @property
    def embed_tokens(self) -> nn.Embedding:
        """The token embedding (B, T) -> (B, T, C)."""
        return self.transformer.wte

    @property
    def layers(self) -> nn.ModuleList:
        """The Transformer blocks, in order."""
        return self.transformer.h

    @property
    def final_norm(self) -> nn.Module:
        """The norm applied after the last block (Identity for post-LN models, whose blocks end with one)."""
        return self.transformer.ln_f if "ln_f" in self.transformer else nn.Identity()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        output_attentions: bool = False,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        """Run the model.

        Args:
            input_ids: (B, T) token ids.
            targets: (B, T) next-token ids (-100 = ignore), or None.
            attention_mask: (B, S) 1 for real tokens, 0 for padding; S = cached + new tokens. Or a (B, 1, T, S)
                bool mask (True = may attend, e.g. block-diagonal for packed sequences), AND-ed with the
                model's causal / sliding-window mask.
            kv_cache: a `KVCache` (see `make_kv_cache`); new tokens start at position `kv_cache.seq_len`.
            encoder_hidden_states: (B, S_enc, n_embd) for models with cross-attention.
            output_attentions: return per-layer attention weights.
            position_ids: (B, T) or (T,) positions of the new tokens for learned/sinusoidal/RoPE positions
                (default `past .. past + T - 1`); left-padded batches pass `cumsum(attention_mask) - 1`.
            output_hidden_states: also return the final hidden states (B, T, C), the input of `lm_head`.
            logits_to_keep: 0 = logits for every position; k > 0 = only for the last k positions (B, k, V),
                e.g. 1 when generating. Computing a loss needs all positions (k must be 0 with `targets`).

        Returns:
            ModelOutput.
        """
        c = self.config
        b, t = input_ids.shape
        past = kv_cache.seq_len if kv_cache is not None else 0
        pos = position_ids if position_ids is not None else torch.arange(past, past + t, device=input_ids.device)
        if past + t > c.block_size:
            raise ValueError(f"sequence of {past + t} tokens is longer than block_size={c.block_size}; crop the input")
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
        check_logits_to_keep(logits_to_keep, targets)
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
                device=input_ids.device,
                dtype=x.dtype,
            )
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        aux_total: torch.Tensor | None = None
        for block in self.transformer.h:
            x, weights, aux = block(
                x,
                attn_mask=mask,
                is_causal=is_causal,
                key_padding_mask=None if mask_4d else attention_mask,
                rope=rope,
                kv_cache=kv_cache,
                encoder_hidden_states=encoder_hidden_states,
                output_attentions=output_attentions,
            )
            if attentions is not None:
                attentions.append(weights)
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        if kv_cache is not None:
            kv_cache.advance(t)
        if c.pre_norm:
            x = self.transformer.ln_f(x)
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep > 0 else x)  # (B, T|k, V)
        aux_loss = aux_total / c.n_layer if aux_total is not None else torch.zeros((), device=x.device)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
            if aux_total is not None:
                loss = loss + c.moe_aux_loss_coef * aux_loss
        return ModelOutput(
            logits=logits,
            loss=loss,
            aux_loss=aux_loss,
            attentions=attentions,
            hidden_states=x if output_hidden_states else None,
        )

    # ------------------------------------------------------------------ helpers
    def make_kv_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """A preallocated `KVCache` sized for this model (max_len defaults to block_size)."""
        c = self.config
        p = self.lm_head.weight
        return KVCache(
            c.n_layer, batch_size, max_len or c.block_size, c.kv_heads, c.head_dim, dtype or p.dtype, p.device
        )

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (tied weights counted once).

        With `exclude_embeddings`, learned position embeddings are not counted, nor the token embedding
        when it is untied (when tied it is also the output layer, as in nanoGPT's count).
        """
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            if "wpe" in self.transformer:
                n -= self.transformer.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.transformer.wte.weight.numel()
        return n

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> GPT:
        """Build a randomly initialised model from a named preset, e.g. `GPT.from_preset("gpt2", dropout=0.1)`."""
        from llmlab.models.gpt.presets import preset_config

        return cls(preset_config(name, **overrides))

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `model_config.json` and `model.safetensors` (tied weights once) into `directory`, atomically."""
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sd = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_embeddings:
            sd.pop("lm_head.weight", None)
        atomic_write(d / WEIGHTS_NAME, lambda p: save_file(sd, str(p), metadata={"format": "pt"}))
        text = json.dumps({"family": "gpt", **dataclasses.asdict(self.config)}, indent=2)
        atomic_write(d / CONFIG_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: torch.device | str = "cpu") -> GPT:
        """Load a model written by `save_pretrained`.

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: the config or weights are corrupt or do not match each other.
        """
        cfg_dict, w_path = read_model_folder(directory, CONFIG_NAME, WEIGHTS_NAME)
        config = GPTConfig.from_dict(cfg_dict)
        sd = load_safetensors(w_path, device)
        with skip_weight_init():
            model = cls(config).to(device)
        load_state_dict_checked(model, sd, str(w_path))
        return model


def load_state_dict_checked(model: GPT, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load `sd` into `model`, raising a one-line ValueError on missing/unexpected keys or shape mismatches."""
    _load_checked(model, sd, source, tied_lm_head=model.config.tie_embeddings)
