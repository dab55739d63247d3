"""Load Hugging Face GPT-2 checkpoints (`config.json` + safetensors) into llmlab's `GPT`.

Pure tensor mapping: `transformers` is never imported. HF GPT-2 uses `Conv1D` layers whose weights are
stored (in_features, out_features), the transpose of `nn.Linear`, so those four matrices per block (and
the three of a cross-attention layer) are transposed; every other tensor keeps its name and layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from llmlab.models.checkpoint_io import skip_weight_init
from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.model import GPT, load_state_dict_checked

# Suffixes of HF Conv1D weights, which are transposed relative to nn.Linear.
_CONV1D_WEIGHTS = (
    "attn.c_attn.weight",
    "attn.c_proj.weight",
    "mlp.c_fc.weight",
    "mlp.c_proj.weight",
    "crossattention.c_attn.weight",
    "crossattention.q_attn.weight",
    "crossattention.c_proj.weight",
)
# Non-parameter buffers found in older HF GPT-2 checkpoints.
_SKIP_SUFFIXES = (".attn.bias", ".attn.masked_bias", ".crossattention.bias", ".crossattention.masked_bias")
_GELU_TANH = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")


def config_from_hf_gpt2(hf: dict[str, Any]) -> GPTConfig:
    """Translate a HF GPT-2 `config.json` dict into a `GPTConfig`.

    Raises:
        ValueError: the config is not GPT-2 or uses a variant llmlab does not implement.
    """
    model_type = hf.get("model_type", "gpt2")
    if model_type != "gpt2":
        raise ValueError(f"config.json has model_type '{model_type}', expected 'gpt2'")
    act = hf.get("activation_function", "gelu_new")
    if act not in _GELU_TANH:
        raise ValueError(f"HF GPT-2 activation_function '{act}' is not supported; llmlab's MLP uses gelu_new (tanh)")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if hf.get(flag, False):
            raise ValueError(f"HF GPT-2 option {flag}=true is not supported by llmlab")
    if not hf.get("scale_attn_weights", True):
        raise ValueError("HF GPT-2 option scale_attn_weights=false is not supported by llmlab")
    try:
        cfg = GPTConfig(
            vocab_size=int(hf["vocab_size"]),
            block_size=int(hf.get("n_positions", hf.get("n_ctx", 1024))),
            n_layer=int(hf["n_layer"]),
            n_head=int(hf["n_head"]),
            n_embd=int(hf["n_embd"]),
            dropout=float(hf.get("resid_pdrop", 0.0)),
            bias=True,
            norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
            mlp_hidden=hf.get("n_inner"),
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)),
            cross_attention=bool(hf.get("add_cross_attention", False)),
        )
    except KeyError as e:
        raise ValueError(f"HF GPT-2 config.json lacks the key {e}") from None
    cfg.validate()
    return cfg


def gpt2_state_dict_from_hf(sd: dict[str, torch.Tensor], config: GPTConfig) -> dict[str, torch.Tensor]:
    """Map a HF GPT-2 state dict (GPT2LMHeadModel or GPT2Model keys) to llmlab `GPT` keys.

    Transposes the Conv1D weights, drops attention-mask buffers, adds the `transformer.` prefix when missing
    and, for untied configs, requires `lm_head.weight`.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if key.endswith(_SKIP_SUFFIXES):
            continue
        name = key if key.startswith(("transformer.", "lm_head.")) else f"transformer.{key}"
        if name.endswith(_CONV1D_WEIGHTS):
            value = value.t()
        out[name] = value.contiguous()
    if not config.tie_embeddings and "lm_head.weight" not in out:
        raise ValueError("untied HF GPT-2 checkpoint has no lm_head.weight")
    if config.tie_embeddings:
        out.pop("lm_head.weight", None)
    return out


def _read_hf_weights(d: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    single, index = d / "model.safetensors", d / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError) as e:
            raise ValueError(f"{index} is not a valid safetensors index ({e})") from None
        files = [d / f for f in sorted(set(weight_map.values()))]
    else:
        raise FileNotFoundError(
            f"no model.safetensors or model.safetensors.index.json in {d}; save the HF model with "
            "save_pretrained(..., safe_serialization=True)"
        )
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"weight shard {f} listed in the index is missing")
        try:
            sd.update(load_file(str(f)))
        except Exception as e:  # safetensors' own error type on corrupt files
            raise ValueError(f"{f} is corrupt or truncated ({e})") from None
    return sd


def load_hf_gpt2(model_dir: str | os.PathLike, device: torch.device | str = "cpu") -> GPT:
    """Build a `GPT` from a folder written by HF `GPT2LMHeadModel.save_pretrained` (safetensors, maybe sharded)."""
    d = Path(model_dir)
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found; pass a folder saved by HF save_pretrained")
    try:
        hf_cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{cfg_path} is not valid JSON ({e})") from None
    config = config_from_hf_gpt2(hf_cfg)
    sd = gpt2_state_dict_from_hf(_read_hf_weights(d), config)
    with skip_weight_init():
        model = GPT(config)
    load_state_dict_checked(model, sd, str(d))
    return model.to(device)
