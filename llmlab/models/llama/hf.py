"""Hugging Face `LlamaForCausalLM` checkpoints <-> llmlab `Llama` (pure tensor/JSON mapping, no `transformers`).

llmlab's Llama uses HF's parameter names, so weights map one to one; only the config needs translating.
A HF checkpoint folder holds `config.json` and either `model.safetensors` or several shards listed in
`model.safetensors.index.json` (`{"weight_map": {name: shard file}}`).

RoPE settings: transformers 4.x writes `rope_theta` and `rope_scaling` at the top level of `config.json`;
transformers 5 writes them together as `rope_parameters` (`{"rope_type", "rope_theta", "factor", ...}`).
Both are read; `to_hf` writes the 4.x keys, which transformers 5 still reads.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from llmlab.models.formats.hf import TokenIds, read_hf_config, read_hf_weights, write_hf_folder
from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.model import Llama

HF_ARCHITECTURE = "LlamaForCausalLM"
# Rope-parameter keys that are not part of a `rope_scaling` dict.
_ROPE_META = ("rope_theta", "partial_rotary_factor")


def config_from_hf(hf: dict[str, Any]) -> LlamaConfig:
    """Translate a HF Llama `config.json` dict into a `LlamaConfig`.

    Raises:
        ValueError: not a Llama config, or a variant llmlab does not implement (activation, RoPE type, ...).
    """
    model_type = hf.get("model_type", "llama")
    if model_type != "llama":
        raise ValueError(f"config.json has model_type '{model_type}', expected 'llama'")
    rope_theta = hf.get("rope_theta", 10000.0)
    rope_scaling = hf.get("rope_scaling")
    params = hf.get("rope_parameters")
    if isinstance(params, dict) and "rope_theta" in params:  # transformers 5 layout
        rope_theta = params["rope_theta"]
        if params.get("rope_type", "default") != "default":
            rope_scaling = {k: v for k, v in params.items() if k not in _ROPE_META}
    if isinstance(params, dict) and params.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError("partial_rotary_factor != 1 is not supported by llmlab's Llama")
    if rope_scaling is not None:
        rope_scaling = {k: v for k, v in rope_scaling.items() if k not in _ROPE_META}
        if "type" in rope_scaling and "rope_type" not in rope_scaling:  # very old configs say "type"
            rope_scaling["rope_type"] = rope_scaling.pop("type")
        if rope_scaling.get("rope_type") == "default":
            rope_scaling = None
    if int(hf.get("pretraining_tp", 1)) != 1:
        raise ValueError("HF Llama option pretraining_tp > 1 is not supported by llmlab")
    try:
        cfg = LlamaConfig(
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            intermediate_size=int(hf["intermediate_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(hf["num_attention_heads"]),
            num_key_value_heads=hf.get("num_key_value_heads"),
            head_dim=hf.get("head_dim"),
            max_position_embeddings=int(hf.get("max_position_embeddings", 2048)),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=float(rope_theta),
            rope_scaling=rope_scaling,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=bool(hf.get("attention_bias", False)),
            mlp_bias=bool(hf.get("mlp_bias", False)),
            attention_dropout=float(hf.get("attention_dropout", 0.0)),
            hidden_act=str(hf.get("hidden_act", "silu")),
            initializer_range=float(hf.get("initializer_range", 0.02)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
        )
    except KeyError as e:
        raise ValueError(f"HF Llama config.json lacks the key {e}") from None
    cfg.validate()
    return cfg


def config_to_hf(config: LlamaConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The HF `config.json` dict for `config` (loadable by `transformers.AutoConfig`)."""
    c = config
    out: dict[str, Any] = {
        "architectures": [HF_ARCHITECTURE],
        "model_type": "llama",
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.kv_heads,
        "head_dim": c.resolved_head_dim,
        "max_position_embeddings": c.max_position_embeddings,
        "rms_norm_eps": c.rms_norm_eps,
        "rope_theta": c.rope_theta,
        "rope_scaling": dict(c.rope_scaling) if c.rope_scaling else None,
        "tie_word_embeddings": c.tie_word_embeddings,
        "attention_bias": c.attention_bias,
        "mlp_bias": c.mlp_bias,
        "attention_dropout": c.attention_dropout,
        "hidden_act": c.hidden_act,
        "initializer_range": c.initializer_range,
        "pretraining_tp": 1,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "pad_token_id": c.pad_token_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }
    return out


def load_hf_llama(model_dir: str | os.PathLike, device: torch.device | str = "cpu") -> Llama:
    """Build a `Llama` from a folder written by HF `LlamaForCausalLM.save_pretrained` (maybe sharded)."""
    config = config_from_hf(read_hf_config(model_dir))
    sd = read_hf_weights(model_dir)
    model = Llama.from_state_dict(config, sd, str(model_dir))
    return model.to(device)


def save_hf_llama(
    model: Llama, directory: str | os.PathLike, dtype: torch.dtype = torch.float32, token_ids: TokenIds | None = None
) -> None:
    """Write `config.json` (+ `generation_config.json`) and `model.safetensors` that `transformers` loads.

    `token_ids` (bos/eos/pad, e.g. the tokenizer's) override the config's special ids.
    """
    write_hf_folder(directory, model.export_state_dict(dtype), config_to_hf(model.config, dtype), token_ids)
