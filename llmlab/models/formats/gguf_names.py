"""Tensor names and hyper-parameters: llama.cpp (GGUF) <-> Hugging Face `transformers`.

llama.cpp renames every tensor when it converts a Hugging Face checkpoint (`convert_hf_to_gguf.py`,
https://github.com/ggml-org/llama.cpp/blob/master/convert_hf_to_gguf.py) and, for Llama, also *permutes the
rows* of the query and key projections. The reason is RoPE (https://arxiv.org/abs/2104.09864): HF rotates
the two halves of each head (`rotate_half`: pairs (i, i + d/2)), llama.cpp rotates adjacent pairs
(2i, 2i+1) like Meta's original code. Re-ordering the rows of W_q and W_k so that row i+d/2 lands next to
row i makes both give the same attention scores:

    permute:    (n_head, 2, d/2, in) -> swap axes 1, 2 -> (n_head, d/2, 2, in)     HF -> GGUF
    un-permute: (n_head, d/2, 2, in) -> swap axes 1, 2 -> (n_head, 2, d/2, in)     GGUF -> HF

For the key projection `n_head` is the number of KV heads (grouped-query attention).

GPT-2 in HF uses `Conv1D` layers whose weights are stored (in, out), the transpose of `nn.Linear`;
llama.cpp stores them as (out, in), so those four matrices are transposed in both directions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

# GGUF per-layer suffix -> HF per-layer suffix (Llama family).
_LLAMA_LAYER = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_LLAMA_GLOBAL = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
# Tensors llama.cpp stores that HF recomputes from the config (Llama-3.1 RoPE frequency factors).
_LLAMA_DERIVED = {"rope_freqs.weight"}

_BLOCK = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")
_HF_LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)\.(weight|bias)$")


def _permute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF -> llama.cpp row order for q/k projections (`LlamaModel.permute` in convert_hf_to_gguf.py)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _unpermute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp -> HF row order for q/k projections (the inverse of `_permute_rope`)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def gguf_to_hf_llama(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename (and un-permute) a llama.cpp Llama state dict to Hugging Face `LlamaForCausalLM` names.

    Args:
        tensors: GGUF name -> tensor (PyTorch order), e.g. `read_gguf(p).tensors`.
        config: HF-style config with `num_attention_heads` and `num_key_value_heads`
            (see `hf_config_from_gguf_llama`).

    Returns:
        HF name -> tensor. With tied embeddings there is no `lm_head.weight` (as in HF's state dict keys
        saved to disk); add it yourself if your model wants it.
    """
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    out: dict[str, torch.Tensor] = {}
    for name in tensors:
        if name in _LLAMA_DERIVED:
            continue
        w = tensors[name]
        m = _BLOCK.match(name)
        if m:
            layer, part, kind = m.groups()
            if part not in _LLAMA_LAYER:
                raise ValueError(f"unknown Llama GGUF tensor {name!r}; known per-layer parts: {sorted(_LLAMA_LAYER)}")
            if part == "attn_q":
                w = _unpermute_rope(w, n_head)
            elif part == "attn_k":
                w = _unpermute_rope(w, n_kv)
            out[f"model.layers.{layer}.{_LLAMA_LAYER[part]}.{kind}"] = w
            continue
        base, _, kind = name.rpartition(".")
        if base not in _LLAMA_GLOBAL:
            raise ValueError(f"unknown Llama GGUF tensor {name!r}")
        out[f"{_LLAMA_GLOBAL[base]}.{kind}"] = w
    return out


def hf_to_gguf_llama(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename (and permute) a Hugging Face Llama state dict to llama.cpp names (inverse of `gguf_to_hf_llama`).

    With `config["tie_word_embeddings"]` true, `lm_head.weight` is dropped (llama.cpp ties by absence).
    Rotary buffers (`rotary_emb.inv_freq`) are skipped.
    """
    n_head = int(config["num_attention_heads"])
    n_kv = int(config.get("num_key_value_heads") or n_head)
    hf_layer = {v: k for k, v in _LLAMA_LAYER.items()}
    hf_global = {v: k for k, v in _LLAMA_GLOBAL.items()}
    out: dict[str, torch.Tensor] = {}
    for name, w in state_dict.items():
        if "rotary_emb" in name:
            continue
        if name == "lm_head.weight" and config.get("tie_word_embeddings", False):
            continue
        m = _HF_LAYER.match(name)
        if m:
            layer, part, kind = m.groups()
            if part not in hf_layer:
                raise ValueError(f"unknown HF Llama tensor {name!r}")
            if part == "self_attn.q_proj":
                w = _permute_rope(w, n_head)
            elif part == "self_attn.k_proj":
                w = _permute_rope(w, n_kv)
            out[f"blk.{layer}.{hf_layer[part]}.{kind}"] = w
            continue
        base, _, kind = name.rpartition(".")
        if base not in hf_global:
            raise ValueError(f"unknown HF Llama tensor {name!r}")
        out[f"{hf_global[base]}.{kind}"] = w
    return out


def hf_config_from_gguf_llama(metadata: Mapping[str, Any], tensor_names: set[str] | None = None) -> dict[str, Any]:
    """An HF-style `LlamaConfig` dict from GGUF metadata.

    Args:
        metadata: `GGUFFile.metadata`.
        tensor_names: the file's tensor names; `tie_word_embeddings` is true when `output.weight` is absent.
            If omitted, embeddings are assumed tied.

    Returns:
        dict with `vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
        num_key_value_heads, head_dim, rms_norm_eps, rope_theta, max_position_embeddings,
        tie_word_embeddings, bos_token_id, eos_token_id, pad_token_id`, plus `model_type`/`hidden_act`.
    """
    arch = metadata.get("general.architecture", "llama")

    def get(key: str, default: Any = None) -> Any:
        return metadata.get(f"{arch}.{key}", default)

    if get("block_count") is None:
        raise ValueError(f"GGUF metadata has no {arch}.block_count; is this a {arch} model file?")
    n_head = int(get("attention.head_count"))
    hidden = int(get("embedding_length"))
    vocab = get("vocab_size")
    if vocab is None:
        vocab = len(metadata.get("tokenizer.ggml.tokens", []))
    cfg: dict[str, Any] = {
        "model_type": "llama",
        "architectures": ["LlamaForCausalLM"],
        "hidden_act": "silu",
        "vocab_size": int(vocab),
        "hidden_size": hidden,
        "intermediate_size": int(get("feed_forward_length")),
        "num_hidden_layers": int(get("block_count")),
        "num_attention_heads": n_head,
        "num_key_value_heads": int(get("attention.head_count_kv", n_head)),
        "head_dim": int(get("rope.dimension_count", hidden // n_head)),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_theta": float(get("rope.freq_base", 10000.0)),
        "max_position_embeddings": int(get("context_length", 2048)),
        "tie_word_embeddings": tensor_names is None or "output.weight" not in tensor_names,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
    }
    if get("rope.scaling.type") not in (None, "none"):
        cfg["rope_scaling"] = {"rope_type": get("rope.scaling.type"), "factor": float(get("rope.scaling.factor", 1.0))}
    return cfg


def llama_metadata_from_hf_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """GGUF `llama.*` hyper-parameter metadata from an HF Llama config dict (inverse of the above)."""
    n_head = int(config["num_attention_heads"])
    md: dict[str, Any] = {
        "llama.vocab_size": int(config["vocab_size"]),
        "llama.context_length": int(config.get("max_position_embeddings", 2048)),
        "llama.embedding_length": int(config["hidden_size"]),
        "llama.block_count": int(config["num_hidden_layers"]),
        "llama.feed_forward_length": int(config["intermediate_size"]),
        "llama.attention.head_count": n_head,
        "llama.attention.head_count_kv": int(config.get("num_key_value_heads") or n_head),
        "llama.rope.dimension_count": int(config.get("head_dim") or config["hidden_size"] // n_head),
        "llama.rope.freq_base": float(config.get("rope_theta", 10000.0)),
        "llama.attention.layer_norm_rms_epsilon": float(config.get("rms_norm_eps", 1e-6)),
    }
    for hf_key, gguf_key in (("bos_token_id", "bos_token_id"), ("eos_token_id", "eos_token_id")):
        if isinstance(config.get(hf_key), int):
            md[f"tokenizer.ggml.{gguf_key}"] = config[hf_key]
    return md


# ------------------------------------------------------------------------------------------------ GPT-2

_GPT2_LAYER = {
    "attn_norm": "ln_1",
    "attn_qkv": "attn.c_attn",
    "attn_output": "attn.c_proj",
    "ffn_norm": "ln_2",
    "ffn_up": "mlp.c_fc",
    "ffn_down": "mlp.c_proj",
}
_GPT2_GLOBAL = {
    "token_embd": "transformer.wte",
    "position_embd": "transformer.wpe",
    "output_norm": "transformer.ln_f",
    "output": "lm_head",
}
_GPT2_CONV1D = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}  # HF Conv1D: weight is (in, out)


def gguf_to_hf_gpt2(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a llama.cpp GPT-2 state dict to HF `GPT2LMHeadModel` names (transposing Conv1D weights)."""
    out: dict[str, torch.Tensor] = {}
    for name in tensors:
        w = tensors[name]
        m = _BLOCK.match(name)
        if m:
            layer, part, kind = m.groups()
            if part not in _GPT2_LAYER:
                raise ValueError(f"unknown GPT-2 GGUF tensor {name!r}; known per-layer parts: {sorted(_GPT2_LAYER)}")
            if part in _GPT2_CONV1D and kind == "weight":
                w = w.t().contiguous()
            out[f"transformer.h.{layer}.{_GPT2_LAYER[part]}.{kind}"] = w
            continue
        base, _, kind = name.rpartition(".")
        if base not in _GPT2_GLOBAL:
            raise ValueError(f"unknown GPT-2 GGUF tensor {name!r}")
        out[f"{_GPT2_GLOBAL[base]}.{kind}"] = w
    return out


def hf_to_gguf_gpt2(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an HF `GPT2LMHeadModel` state dict to llama.cpp names (inverse of `gguf_to_hf_gpt2`).

    The causal-mask buffers (`attn.bias`, `attn.masked_bias`) are skipped. llama.cpp's converter always
    writes `output.weight` (a copy of the embedding when tied), so it is kept here too.
    """
    hf_layer = {v: k for k, v in _GPT2_LAYER.items()}
    hf_global = {v: k for k, v in _GPT2_GLOBAL.items()}
    out: dict[str, torch.Tensor] = {}
    for name, w in state_dict.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue
        m = re.match(r"^transformer\.h\.(\d+)\.(.+)\.(weight|bias)$", name)
        if m:
            layer, part, kind = m.groups()
            if part not in hf_layer:
                raise ValueError(f"unknown HF GPT-2 tensor {name!r}")
            if hf_layer[part] in _GPT2_CONV1D and kind == "weight":
                w = w.t().contiguous()
            out[f"blk.{layer}.{hf_layer[part]}.{kind}"] = w
            continue
        base, _, kind = name.rpartition(".")
        if base not in hf_global:
            raise ValueError(f"unknown HF GPT-2 tensor {name!r}")
        out[f"{hf_global[base]}.{kind}"] = w
    if "output.weight" not in out and "token_embd.weight" in out:
        out["output.weight"] = out["token_embd.weight"]
    return out
