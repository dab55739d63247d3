"""Hugging Face GPT-2 checkpoints (`config.json` + safetensors) <-> llmlab's `GPT`, in both directions.

Pure tensor mapping: `transformers` is never imported. HF GPT-2 uses `Conv1D` layers whose weights are
stored (in_features, out_features), the transpose of `nn.Linear`, so those four matrices per block (and
the three of a cross-attention layer) are transposed; every other tensor keeps its name and layout.
Only plain GPT-2 (learned positions, LayerNorm, GELU, biases, pre-norm, MHA, dense MLP) has a HF equivalent.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from llmlab.models.formats.hf import TokenIds, read_hf_config, read_hf_weights, write_hf_folder
from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.model import GPT

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
HF_ARCHITECTURE = "GPT2LMHeadModel"


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


def load_hf_gpt2(model_dir: str | os.PathLike, device: torch.device | str = "cpu") -> GPT:
    """Build a `GPT` from a folder written by HF `GPT2LMHeadModel.save_pretrained` (safetensors, maybe sharded)."""
    config = config_from_hf_gpt2(read_hf_config(model_dir))
    sd = gpt2_state_dict_from_hf(read_hf_weights(model_dir), config)
    model = GPT.from_state_dict(config, sd, str(model_dir))
    return model.to(device)


# ---------------------------------------------------------------------------------------------------- writing


def check_plain_gpt2(config: GPTConfig) -> None:
    """Raise ValueError unless `config` is plain GPT-2 (what HF GPT2LMHeadModel and llama.cpp's gpt2 run)."""
    c = config
    problems = [
        f"{name}={value!r}"
        for name, value, ok in (
            ("position", c.position, c.position == "learned"),
            ("norm", c.norm, c.norm == "layernorm"),
            ("mlp", c.mlp, c.mlp == "gelu"),
            ("bias", c.bias, c.bias),
            ("pre_norm", c.pre_norm, c.pre_norm),
            ("n_kv_head", c.n_kv_head, c.n_kv_head in (None, c.n_head)),
            ("moe_num_experts", c.moe_num_experts, c.moe_num_experts == 0),
            ("attention", c.attention, c.attention in ("sdpa", "eager")),
            ("causal", c.causal, c.causal),
            ("cross_attention", c.cross_attention, not c.cross_attention),
        )
        if not ok
    ]
    if problems:
        raise ValueError(
            f"this GPT model is not plain GPT-2 ({', '.join(problems)}), so it has no GPT-2 equivalent in "
            "HF/GGUF; save it with --format llmlab"
        )


def gpt2_state_dict_to_hf(model: GPT, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """llmlab GPT state dict -> HF `GPT2LMHeadModel` names/layouts (Conv1D weights transposed, tied lm_head dropped)."""
    out: dict[str, torch.Tensor] = {}
    for name, w in model.state_dict().items():
        if name == "lm_head.weight" and model.config.tie_embeddings:
            continue
        if name.endswith(_CONV1D_WEIGHTS):
            w = w.t()
        w = w.detach().contiguous()
        out[name] = w.to(dtype) if dtype is not None else w
    return out


def gpt2_config_to_hf(config: GPTConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """HF GPT-2 `config.json` dict for a (plain GPT-2) GPTConfig."""
    check_plain_gpt2(config)
    c = config
    return {
        "architectures": [HF_ARCHITECTURE],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_ctx": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": c.mlp_hidden,
        "activation_function": "gelu_new",
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": c.dropout,
        "layer_norm_epsilon": c.norm_eps,
        "tie_word_embeddings": c.tie_embeddings,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }


def save_hf_gpt2(
    model: GPT, directory: str | os.PathLike, dtype: torch.dtype = torch.float32, token_ids: TokenIds | None = None
) -> None:
    """Write `config.json` (+ `generation_config.json` with `token_ids`) and `model.safetensors` for HF GPT-2."""
    config = gpt2_config_to_hf(model.config, dtype)
    write_hf_folder(Path(directory), gpt2_state_dict_to_hf(model, dtype), config, token_ids)
