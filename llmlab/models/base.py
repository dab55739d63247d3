"""`DecoderLM`: what every llmlab decoder family shares — saving and loading its folder, building from a state
dict or a preset, weight init, the KV cache — so that a family's model class holds only its architecture.

A family's model subclasses it and sets `family_name`, `config_class` and `presets`; its config provides the
family-agnostic aliases `n_layer`, `block_size`, `kv_heads`, `tie_embeddings` and `resolved()`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, ClassVar, TypeVar

import torch
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

    def __init__(self, config: Any) -> None:
        """Validate `config` (one-line ValueError) and keep it as `self.config`; the subclass builds the layers."""
        super().__init__()
        config.validate()
        self.config = config

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
        p = self.lm_head.weight
        head_dim = c.resolved().head_dim
        return KVCache(c.n_layer, batch_size, max_len or c.block_size, c.kv_heads, head_dim, dtype or p.dtype, p.device)

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
