"""GGUF (llama.cpp) files <-> llmlab `Llama`: tensor names, the q/k row permutation, hyper-parameters, RoPE scaling.

llama.cpp *permutes the rows* of the query and key projections when it converts a Llama. The reason is RoPE
(https://arxiv.org/abs/2104.09864): HF rotates the two halves of each head (`rotate_half`: pairs (i, i + d/2)),
llama.cpp rotates adjacent pairs (2i, 2i+1) like Meta's original code. Re-ordering the rows of W_q and W_k so
that row i+d/2 lands next to row i makes both give the same attention scores:

    permute:    (n_head, 2, d/2, in) -> swap axes 1, 2 -> (n_head, d/2, 2, in)     HF -> GGUF
    un-permute: (n_head, d/2, 2, in) -> swap axes 1, 2 -> (n_head, 2, d/2, in)     GGUF -> HF

For the key projection `n_head` is the number of KV heads (grouped-query attention).

RoPE scaling: linear scaling is stored by name (`llama.rope.scaling.type`/`factor`); llama3 scaling (Llama 3.1+)
only as the tensor `rope_freqs.weight`, the per-frequency divisors (see `llmlab.models.llama.rope`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from llmlab.io.gguf import GGUFFile, read_gguf, write_gguf
from llmlab.models.formats.gguf_names import TensorNames, gguf_to_hf, hf_to_gguf
from llmlab.models.llama.hf import config_from_hf, config_to_hf
from llmlab.models.llama.model import Llama
from llmlab.models.llama.rope import llama3_freq_factors, llama3_scaling_from_factors

GGUF_ARCHITECTURE = "llama"
ROPE_FREQS = "rope_freqs.weight"
LLAMA_NAMES = TensorNames(
    family="Llama",
    hf_layers="model.layers",
    layer={
        "attn_q": "self_attn.q_proj",
        "attn_k": "self_attn.k_proj",
        "attn_v": "self_attn.v_proj",
        "attn_output": "self_attn.o_proj",
        "attn_norm": "input_layernorm",
        "ffn_norm": "post_attention_layernorm",
        "ffn_gate": "mlp.gate_proj",
        "ffn_up": "mlp.up_proj",
        "ffn_down": "mlp.down_proj",
    },
    globals={"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"},
    gguf_derived=frozenset({ROPE_FREQS}),  # HF recomputes the RoPE frequency factors from the config
    hf_skipped=("rotary_emb.inv_freq",),
)


def _permute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """HF -> llama.cpp row order for q/k projections (`LlamaModel.permute` in convert_hf_to_gguf.py)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _unpermute_rope(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """llama.cpp -> HF row order for q/k projections (the inverse of `_permute_rope`)."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _heads(config: Mapping[str, Any]) -> dict[str, int]:
    n_head = int(config["num_attention_heads"])
    return {"attn_q": n_head, "attn_k": int(config.get("num_key_value_heads") or n_head)}


def gguf_to_hf_llama(tensors: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename (and un-permute) a llama.cpp Llama state dict to Hugging Face `LlamaForCausalLM` names.

    Args:
        tensors: GGUF name -> tensor (PyTorch order), e.g. `read_gguf(p).tensors`.
        config: HF-style config with `num_attention_heads` and `num_key_value_heads`.

    Returns:
        HF name -> tensor. With tied embeddings there is no `lm_head.weight`.
    """
    heads = _heads(config)
    return gguf_to_hf(tensors, LLAMA_NAMES, lambda part, _, w: _unpermute_rope(w, heads[part]) if part in heads else w)


def hf_to_gguf_llama(state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Rename (and permute) a Hugging Face Llama state dict to llama.cpp names (inverse of `gguf_to_hf_llama`).

    With `config["tie_word_embeddings"]` true, `lm_head.weight` is dropped (llama.cpp ties by absence).
    """
    if config.get("tie_word_embeddings", False):
        state_dict = {k: v for k, v in state_dict.items() if k != "lm_head.weight"}
    heads = _heads(config)
    return hf_to_gguf(state_dict, LLAMA_NAMES, lambda part, _, w: _permute_rope(w, heads[part]) if part in heads else w)


def hf_config_from_gguf_llama(metadata: Mapping[str, Any], tensors: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """An HF-style Llama config dict from GGUF metadata (and the tensors: `output.weight`, `rope_freqs.weight`).

    Args:
        metadata: `GGUFFile.metadata`.
        tensors: the file's tensors (or just their names); `tie_word_embeddings` is true when `output.weight` is
            absent, and a `rope_freqs.weight` tensor becomes llama3 `rope_scaling`. Omitted: tied, no scaling.
    """
    arch = metadata.get("general.architecture", GGUF_ARCHITECTURE)

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
        "tie_word_embeddings": tensors is None or "output.weight" not in tensors,
        "bos_token_id": metadata.get("tokenizer.ggml.bos_token_id"),
        "eos_token_id": metadata.get("tokenizer.ggml.eos_token_id"),
        "pad_token_id": metadata.get("tokenizer.ggml.padding_token_id"),
    }
    if get("rope.scaling.type") not in (None, "none"):
        cfg["rope_scaling"] = {"rope_type": get("rope.scaling.type"), "factor": float(get("rope.scaling.factor", 1.0))}
    freqs = tensors.get(ROPE_FREQS) if isinstance(tensors, Mapping) else None
    if freqs is not None:
        original = int(get("rope.scaling.original_context_length", 0)) or None
        kw = {"original_context": original} if original else {}
        cfg["rope_scaling"] = llama3_scaling_from_factors(freqs, cfg["rope_theta"], cfg["head_dim"], **kw)
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
    for key in ("bos_token_id", "eos_token_id"):
        if isinstance(config.get(key), int):
            md[f"tokenizer.ggml.{key}"] = config[key]
    return md


def load_gguf_llama(source: str | os.PathLike | GGUFFile, device: torch.device | str = "cpu") -> Llama:
    """Build a float32 `Llama` from a GGUF file (quantised tensors are dequantised).

    Args:
        source: a `.gguf` path or an already-read `GGUFFile`.
        device: where to put the model.
    """
    f = source if isinstance(source, GGUFFile) else read_gguf(source)
    if f.architecture != GGUF_ARCHITECTURE:
        raise ValueError(f"{f.path} holds a '{f.architecture}' model, not '{GGUF_ARCHITECTURE}'")
    try:
        hf_config = hf_config_from_gguf_llama(f.metadata, f.tensors)
    except ValueError as e:
        raise ValueError(f"{f.path}: {e}") from None
    config = config_from_hf(hf_config)
    sd = gguf_to_hf_llama(f.tensors, hf_config)
    model = Llama.from_state_dict(config, sd, str(f.path))
    return model.to(device).eval()


def save_gguf_llama(
    model: Llama,
    path: str | os.PathLike,
    dtype: str = "F32",
    extra_metadata: Mapping[str, Any] | None = None,
    metadata_types: Mapping[str, str] | None = None,
) -> None:
    """Write `model` as a llama.cpp GGUF file (`dtype` "F32", "F16" or "Q8_0"; norms stay F32), atomically.

    Args:
        model: the model.
        path: destination `.gguf` file.
        dtype: storage type of the matrices.
        extra_metadata: more keys, typically the tokenizer (`tokenizer.ggml.*`, `tokenizer.chat_template`).
        metadata_types: GGUF type names for keys of `extra_metadata` that must keep a specific type.
    """
    c = model.config
    hf_config = config_to_hf(c)
    tensors = hf_to_gguf_llama(model.export_state_dict(), hf_config)
    metadata: dict[str, Any] = {"general.name": "llmlab-llama", **llama_metadata_from_hf_config(hf_config)}
    if c.rope_type == "linear":  # llama.cpp knows linear scaling by name
        metadata["llama.rope.scaling.type"] = "linear"
        metadata["llama.rope.scaling.factor"] = float(c.rope_scaling["factor"])
    elif c.rope_type == "llama3":  # ... and llama3 scaling by its frequency divisors, as its converter writes it
        tensors[ROPE_FREQS] = llama3_freq_factors(c)
    elif c.rope_scaling:
        raise ValueError(
            f"rope_scaling type '{c.rope_type}' cannot be stored in GGUF by llmlab; convert to hf or llmlab instead"
        )
    metadata.update(extra_metadata or {})
    write_gguf(path, GGUF_ARCHITECTURE, metadata, tensors, dtype, metadata_types=metadata_types)
