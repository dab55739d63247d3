"""`DecoderLM`: what every llmlab decoder family shares — saving and loading its folder, building from a state
dict or a preset, weight init, the KV cache — so that a family's model class holds only its architecture.

A family's model subclasses it and sets `family_name`, `config_class`, `presets` and `module_paths` (where its
token embedding, layers and final norm live: the structural accessors read them), and writes `_embed` (token and
position embeddings, RoPE tables) and `_attention_masks`; `forward` (layers, final norm, LM head, loss) is shared.
Its layers take `(x, *, attn_mask, is_causal, rope, kv_cache, output_attentions, ...)` and return
`(x, attention weights or None, MoE aux loss or None)`. Its config provides the family-agnostic aliases
`n_layer`, `block_size`, `kv_heads`, `tie_embeddings` and `resolved()`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.checkpoint_io import (
    load_safetensors,
    load_state_dict_checked,
    read_model_folder,
    skip_weight_init,
    write_model_folder,
)
from llmlab.models.registry import PresetRegistry, config_from_dict
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.outputs import ModelOutput, check_logits_to_keep

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"
M = TypeVar("M", bound="DecoderLM")


class DecoderLM(nn.Module):
    """Base class of the llmlab decoder families (GPT, Llama): save/load, presets, init, KV cache."""

    family_name: ClassVar[str]
    config_class: ClassVar[type]
    presets: ClassVar[PresetRegistry]
    config: Any
    lm_head: nn.Linear
    # Where the family keeps its structural parts: module paths for `embed_tokens`, `layers`, `final_norm`.
    module_paths: ClassVar[dict[str, str]]
    loss_in_float32: ClassVar[bool] = False  # compute the loss on float32 logits (Llama, as HF does)

    def __init__(self, config: Any) -> None:
        """Validate `config` (one-line ValueError) and keep it as `self.config`; the subclass builds the layers."""
        super().__init__()
        config.validate()
        self.config = config

    # Structural accessors, the same on every family: PEFT, heads and decoding name these, never a family's modules.
    @property
    def embed_tokens(self) -> nn.Embedding:
        """The token embedding (B, T) -> (B, T, C)."""
        return self.get_submodule(self.module_paths["embed_tokens"])

    @property
    def layers(self) -> nn.ModuleList:
        """The Transformer layers, in order."""
        return self.get_submodule(self.module_paths["layers"])

    @property
    def final_norm(self) -> nn.Module:
        """The norm after the last layer (Identity where there is none: post-LN blocks end with their own)."""
        try:
            return self.get_submodule(self.module_paths["final_norm"])
        except AttributeError:
            return nn.Identity()

    def _init_normal(self, module: nn.Module, std: float) -> None:
        """Normal(0, std) weights and zero biases for linear layers and embeddings (GPT-2 / Llama init)."""
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)

    def make_kv_cache(self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """A preallocated `KVCache` sized for this model (max_len defaults to the context window)."""
        c = self.config
        # The LM head's weight; a quantized head (llmlab.compress) has none: the first float parameter (a norm).
        p = next(t for t in (*self.lm_head.parameters(), *self.parameters()) if t.is_floating_point())
        head_dim = c.resolved().head_dim
        return KVCache(c.n_layer, batch_size, max_len or c.block_size, c.kv_heads, head_dim, dtype or p.dtype, p.device)

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
        **layer_inputs: Any,
    ) -> ModelOutput:
        """Run the model.

        Args:
            input_ids: (B, T) token ids.
            targets: (B, T) next-token ids (-100 = ignore), or None.
            attention_mask: (B, S) 1 for real tokens, 0 for padding; S = cached + new tokens. Or a (B, 1, T, S)
                bool mask (True = may attend, e.g. block-diagonal for packed sequences), AND-ed with the
                model's causal (or sliding-window) mask.
            kv_cache: a `KVCache` (see `make_kv_cache`); new tokens start at position `kv_cache.seq_len`.
            position_ids: (B, T) or (T,) positions of the new tokens (default `past .. past + T - 1`, as HF's
                forward); left-padded batches pass `cumsum(attention_mask) - 1`.
            output_attentions: return per-layer attention weights.
            output_hidden_states: also return the final hidden states (B, T, C) (after the final norm), the
                input of `lm_head`.
            logits_to_keep: 0 = logits for every position; k > 0 = only for the last k positions (B, k, V),
                e.g. 1 when generating. Computing a loss needs all positions (k must be 0 with `targets`).
            layer_inputs: family-specific inputs of every layer, e.g. GPT's `encoder_hidden_states`
                (B, S_enc, n_embd) for models with cross-attention.

        Returns:
            ModelOutput.
        """
        t = input_ids.shape[1]
        past = kv_cache.seq_len if kv_cache is not None else 0
        if position_ids is None:
            position_ids = torch.arange(past, past + t, device=input_ids.device)  # (T,)
        x, rope = self._embed(input_ids, position_ids, past)  # (B, T, C)
        check_logits_to_keep(logits_to_keep, targets)
        masks = self._attention_masks(t, past, attention_mask, x)
        attentions: list[torch.Tensor] | None = [] if output_attentions else None
        aux_total: torch.Tensor | None = None
        for layer in self.layers:
            x, weights, aux = layer(
                x, rope=rope, kv_cache=kv_cache, output_attentions=output_attentions, **masks, **layer_inputs
            )
            if attentions is not None:
                attentions.append(weights)
            if aux is not None:
                aux_total = aux if aux_total is None else aux_total + aux
        if kv_cache is not None:
            kv_cache.advance(t)
        x = self.final_norm(x)
        logits = self.lm_head(x[:, -logits_to_keep:] if logits_to_keep > 0 else x)  # (B, T|k, V)
        aux_loss = aux_total / self.config.n_layer if aux_total is not None else torch.zeros((), device=x.device)
        loss = None
        if targets is not None:
            flat = logits.float() if self.loss_in_float32 else logits
            loss = F.cross_entropy(flat.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
            if aux_total is not None:
                loss = loss + self.config.moe_aux_loss_coef * aux_loss
        hidden_states = x if output_hidden_states else None
        return ModelOutput(logits, loss, aux_loss, attentions, hidden_states)

    def _embed(
        self, input_ids: torch.Tensor, position_ids: torch.Tensor, past: int
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """The family's input embedding x (B, T, C) of the new tokens and its RoPE (cos, sin) or None."""
        raise NotImplementedError

    def _attention_masks(
        self, t: int, past: int, attention_mask: torch.Tensor | None, x: torch.Tensor
    ) -> dict[str, Any]:
        """The mask keyword arguments of every layer (`attn_mask`, `is_causal`, ...) for T new of S = past + T."""
        raise NotImplementedError

    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        """Number of parameters (tied weights counted once); optionally without the untied input embedding."""
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings and not self.config.tie_embeddings:
            n -= self.embed_tokens.weight.numel()
        return n

    @classmethod
    def from_preset(cls: type[M], name: str, **overrides: object) -> M:
        """A randomly initialised model from a named preset with overrides, e.g. `from_preset("gpt2", dropout=0.1)`."""
        return cls(cls.presets.get(name, **overrides))

    # ------------------------------------------------------------------ save / load
    def export_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The state dict to save: detached, contiguous, on the CPU, optionally cast; a tied `lm_head` dropped."""
        sd = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_embeddings:
            sd.pop("lm_head.weight", None)
        if dtype is not None:
            sd = {k: v.to(dtype) for k, v in sd.items()}
        return sd

    def save_pretrained(self, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
        """Write `model_config.json` (with the `"family"` key) and `model.safetensors` into `directory`, atomically.

        Args:
            directory: destination folder (created if needed).
            dtype: store the weights in this dtype (e.g. torch.float16); default: as they are.
        """
        config = {"family": self.family_name, **dataclasses.asdict(self.config)}
        write_model_folder(directory, CONFIG_NAME, config, WEIGHTS_NAME, self.export_state_dict(dtype))

    @classmethod
    def from_pretrained(cls: type[M], directory: str | os.PathLike, device: torch.device | str = "cpu") -> M:
        """Load a model written by `save_pretrained` (weights are loaded into float32 parameters).

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: the config or weights are corrupt or do not match each other.
        """
        cfg_dict, w_path = read_model_folder(directory, CONFIG_NAME, WEIGHTS_NAME)
        config = config_from_dict(cls.config_class, cfg_dict, cls.family_name)
        return cls.from_state_dict(config, load_safetensors(w_path), str(w_path)).to(device)

    @classmethod
    def from_state_dict(cls: type[M], config: Any, state_dict: dict[str, torch.Tensor], source: str) -> M:
        """A model of `config` holding exactly `state_dict` (no random init first; one-line ValueError on mismatch)."""
        with skip_weight_init():
            model = cls(config)
        sd = {k: v for k, v in state_dict.items() if "rotary_emb" not in k}  # old HF checkpoints store inv_freq
        load_state_dict_checked(model, sd, source, tied_lm_head=config.tie_embeddings)
        return model
