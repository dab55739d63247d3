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

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.checkpoint_io import atomic_write, load_safetensors, read_model_folder, skip_weight_init
from llmlab.models.checkpoint_io import load_state_dict_checked as _load_checked
from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.rope import rope_cos_sin_at, rope_inv_freq
from llmlab.nn.attention import Attention
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.masks import build_attention_mask
from llmlab.nn.mlp import SwiGLUMLP
from llmlab.nn.norms import RMSNorm
from llmlab.nn.outputs import ModelOutput, check_logits_to_keep

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"


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
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, T, C) -> (x (B, T, C), attention weights (B, nh, T, S) or None)."""
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
        return x, weights


class LlamaModel(nn.Module):
    """The decoder stack without the output layer (HF `LlamaModel`): embeddings, layers, final RMSNorm."""

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(LlamaDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class Llama(nn.Module):
    """A Llama-architecture causal language model configured by `LlamaConfig`.

    Args:
        config: the architecture; `config.validate()` is called first.
    """

    # Module-name groups PEFT targets by role (see llmlab.peft.targets).
    peft_targets = {"query_value": ("q_proj", "v_proj"), "key_value": ("k_proj", "v_proj"),
                    "attention_output": ("o_proj",), "mlp_output": ("down_proj",)}  # fmt: skip
    peft_fan_in_fan_out = False

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:  # https://arxiv.org/abs/1608.05859
            self.lm_head.weight = self.model.embed_tokens.weight
        # RoPE frequencies: a fixed, non-persistent buffer (recomputed for long inputs with dynamic scaling).
        self.register_buffer("inv_freq", rope_inv_freq(config), persistent=False)
        self.apply(self._init_weights)

    # Structural accessors, the same on every family: PEFT, heads and decoding name these, never a family's modules.
    @property
    def embed_tokens(self) -> nn.Embedding:
        """The token embedding (B, T) -> (B, T, C)."""
        return self.model.embed_tokens

    @property
    def layers(self) -> nn.ModuleList:
        """The decoder layers, in order."""
        return self.model.layers

    @property
    def final_norm(self) -> nn.Module:
        """The RMSNorm after the last layer."""
        return self.model.norm

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        logits_to_keep: int = 0,
    ) -> ModelOutput:
        """Run the model.

        Args:
            input_ids: (B, T) token ids.
            targets: (B, T) next-token ids (-100 = ignore), or None.
            attention_mask: (B, S) 1 for real tokens, 0 for padding; S = cached + new tokens. Or a (B, 1, T, S)
                bool mask (True = may attend, e.g. block-diagonal for packed sequences), AND-ed with the causal mask.
            kv_cache: a `KVCache` (see `make_kv_cache`); new tokens start at position `kv_cache.seq_len`.
            position_ids: (B, T) or (T,) RoPE positions; default `past .. past + T - 1` (as HF's forward).
            output_attentions: return per-layer attention weights.
            output_hidden_states: also return the final hidden states (B, T, C) (after `model.norm`), the input
                of `lm_head`.
            logits_to_keep: 0 = logits for every position; k > 0 = only for the last k positions (B, k, V),
                e.g. 1 when generating. Computing a loss needs all positions (k must be 0 with `targets`).

        Returns:
            ModelOutput.
        """
        c = self.config
        b, t = input_ids.shape
        check_logits_to_keep(logits_to_keep, targets)
        past = kv_cache.seq_len if kv_cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device)  # (T,)
        x = self.model.embed_tokens(input_ids)  # (B, T, C)
        inv_freq = self.inv_freq
        if c.rope_type == "dynamic" and past + t > c.max_position_embeddings:
            inv_freq = rope_inv_freq(c, past + t).to(x.device)  # NTK: a larger base for longer inputs
        cos, sin = rope_cos_sin_at(inv_freq, position_ids)  # (T, hs) or (B, 1, T, hs)
        rope = (cos.to(x.dtype), sin.to(x.dtype))
        mask, is_causal = build_attention_mask(
            t, past + t, causal=True, key_padding_mask=attention_mask, device=input_ids.device, dtype=x.dtype
        )
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        for layer in self.model.layers:
            x, weights = layer(
                x,
                attn_mask=mask,
                is_causal=is_causal,
                rope=rope,
                kv_cache=kv_cache,
                output_attentions=output_attentions,
            )
            if attentions is not None:
                attentions.append(weights)
        if kv_cache is not None:
            kv_cache.advance(t)
        x = self.model.norm(x)
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep > 0 else x)  # (B, T|k, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        return ModelOutput(
            logits=logits,
            loss=loss,
            aux_loss=torch.zeros((), device=x.device),
            attentions=attentions,
            hidden_states=x if output_hidden_states else None,
        )

    # ------------------------------------------------------------------ helpers
    def make_kv_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """A preallocated `KVCache` sized for this model (max_len defaults to max_position_embeddings)."""
        c = self.config
        p = self.lm_head.weight
        return KVCache(
            c.num_hidden_layers,
            batch_size,
            max_len or c.max_position_embeddings,
            c.kv_heads,
            c.resolved_head_dim,
            dtype or p.dtype,
            p.device,
        )

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (tied weights counted once); optionally without the untied input embedding."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and not self.config.tie_word_embeddings:
            n -= self.model.embed_tokens.weight.numel()
        return n

    @classmethod
    def from_preset(cls, name: str, **overrides: object) -> Llama:
        """A randomly initialised model from a named preset, e.g. `Llama.from_preset("smollm2-135m")`."""
        from llmlab.models.llama.presets import preset_config

        return cls(preset_config(name, **overrides))

    # ------------------------------------------------------------------ save / load
    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write `model_config.json` (with `"family": "llama"`) and `model.safetensors` into `directory`.

        Each file is written to a temp file and renamed. Tied weights are stored once (no `lm_head.weight`).

        Args:
            directory: destination folder (created if needed).
            dtype: store the weights in this dtype (e.g. torch.float16); default: as they are.
        """
        from safetensors.torch import save_file

        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        sd = self.export_state_dict(dtype)
        atomic_write(d / WEIGHTS_NAME, lambda p: save_file(sd, p, metadata={"format": "pt"}))
        text = json.dumps(self.config.to_dict(), indent=2)
        atomic_write(d / CONFIG_NAME, lambda p: Path(p).write_text(text, encoding="utf-8"))

    def export_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The HF-named state dict to save: contiguous, detached, optionally cast, tied `lm_head` dropped."""
        sd = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            sd.pop("lm_head.weight", None)
        if dtype is not None:
            sd = {k: v.to(dtype) for k, v in sd.items()}
        return sd

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device: torch.device | str = "cpu") -> Llama:
        """Load a model written by `save_pretrained` (weights are loaded into float32 parameters).

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: the config or weights are corrupt or do not match each other.
        """
        cfg_dict, w_path = read_model_folder(directory, CONFIG_NAME, WEIGHTS_NAME)
        config = LlamaConfig.from_dict(cfg_dict)
        sd = load_safetensors(w_path)
        with skip_weight_init():
            model = cls(config)
        load_state_dict_checked(model, sd, str(w_path))
        return model.to(device)


def load_state_dict_checked(model: Llama, sd: dict[str, torch.Tensor], source: str) -> None:
    """Load `sd` into `model` (cast to the model's dtype); one-line ValueError on missing/unexpected keys or shapes."""
    sd = {k: v for k, v in sd.items() if "rotary_emb" not in k}  # old HF checkpoints store inv_freq buffers
    _load_checked(model, sd, source, tied_lm_head=model.config.tie_word_embeddings)
