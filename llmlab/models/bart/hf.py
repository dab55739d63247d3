"""Hugging Face `BartForConditionalGeneration` checkpoints <-> llmlab `Bart` (tensor/JSON mapping, no `transformers`)."""

from __future__ import annotations

import os
from typing import Any

import torch

from llmlab.models.bart.config import BartConfig
from llmlab.models.bart.model import Bart
from llmlab.models.formats.hf import TokenIds, read_hf_config, read_hf_weights, write_hf_folder

HF_ARCHITECTURE = "BartForConditionalGeneration"
_ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "relu": "relu"}  # HF name -> llmlab mlp kind
_LAYER = {
    "self_attn.o_proj": "self_attn.out_proj", "self_attn_norm": "self_attn_layer_norm",
    "cross_attn.o_proj": "encoder_attn.out_proj", "cross_attn_norm": "encoder_attn_layer_norm",
    "mlp.c_fc": "fc1", "mlp.c_proj": "fc2", "mlp_norm": "final_layer_norm",
}  # fmt: skip


def config_from_hf(hf: dict[str, Any]) -> BartConfig:
    """A `BartConfig` from a HF BART `config.json` dict (ValueError for variants llmlab does not implement)."""
    act = hf.get("activation_function", "gelu")
    if act not in _ACTIVATIONS:
        raise ValueError(f"BART activation_function {act!r} is not supported; llmlab reads {', '.join(_ACTIVATIONS)}")
    if hf.get("add_final_layer_norm") or hf.get("normalize_before"):
        raise ValueError("this is an mBART-style (pre-LN) config; llmlab's BART is post-LN")
    n_embd, n_head = int(hf["d_model"]), int(hf["encoder_attention_heads"])
    return BartConfig(
        vocab_size=int(hf["vocab_size"]), n_embd=n_embd, n_head=n_head, head_dim=n_embd // n_head,
        d_ff=int(hf["encoder_ffn_dim"]), n_layer=int(hf["encoder_layers"]), n_decoder_layer=None if hf["decoder_layers"] == hf["encoder_layers"] else int(hf["decoder_layers"]),
        block_size=int(hf["max_position_embeddings"]), dropout=float(hf.get("dropout", 0.1)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", True)), pad_token_id=int(hf.get("pad_token_id", 1)),
        eos_token_id=int(hf.get("eos_token_id", 2)), bos_token_id=int(hf.get("bos_token_id", 0)),
        decoder_start_token_id=int(hf.get("decoder_start_token_id", 2)), mlp=_ACTIVATIONS[act],
        scale_embedding=bool(hf.get("scale_embedding", False)),
    )  # fmt: skip


def config_to_hf(c: BartConfig) -> dict[str, Any]:
    """The HF `config.json` dict of a `BartConfig`."""
    if c.decoder_layers and c.n_embd != c.n_head * c.head_dim:
        raise ValueError(f"HF BART needs head_dim = n_embd / n_head; this model has {c.head_dim} (n_embd {c.n_embd})")
    act = {v: k for k, v in _ACTIVATIONS.items()}[c.mlp]
    return {
        "architectures": [HF_ARCHITECTURE], "model_type": "bart", "vocab_size": c.vocab_size, "d_model": c.n_embd,
        "encoder_attention_heads": c.n_head, "decoder_attention_heads": c.n_head, "encoder_ffn_dim": c.d_ff,
        "decoder_ffn_dim": c.d_ff, "encoder_layers": c.n_layer, "decoder_layers": c.decoder_layers,
        "max_position_embeddings": c.block_size, "dropout": c.dropout, "activation_function": act,
        "scale_embedding": c.scale_embedding, "tie_word_embeddings": c.tie_embeddings, "is_encoder_decoder": True,
        "bos_token_id": c.bos_token_id, "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id,
        "decoder_start_token_id": c.decoder_start_token_id, "forced_eos_token_id": None,
    }  # fmt: skip


def _hf_name(name: str) -> str:
    """llmlab parameter name -> HF name, e.g. decoder.layers.0.cross_attn.q_proj.weight ->
    model.decoder.layers.0.encoder_attn.q_proj.weight."""
    if name in ("lm_head.weight", "final_logits_bias"):
        return name
    parts = name.split(".")
    if parts[1] == "positions":
        return f"model.{parts[0]}.embed_positions.{parts[-1]}"
    if parts[1] == "embed_norm":
        return f"model.{parts[0]}.layernorm_embedding.{parts[-1]}"
    if parts[1] == "layers":
        inner = ".".join(parts[3:-1])
        inner = _LAYER.get(inner, inner.replace("cross_attn", "encoder_attn"))
        return f"model.{'.'.join(parts[:3])}.{inner}.{parts[-1]}"
    return f"model.{name}"  # shared.weight


def load_hf_bart(model_dir: str | os.PathLike) -> Bart:
    """An llmlab `Bart` from a HF BartForConditionalGeneration folder (ValueError on a mismatch)."""
    config = config_from_hf(read_hf_config(model_dir))
    hf_sd = read_hf_weights(model_dir)
    for key in ("model.encoder.embed_tokens.weight", "model.decoder.embed_tokens.weight", "lm_head.weight"):
        if "model.shared.weight" not in hf_sd and key in hf_sd:
            hf_sd["model.shared.weight"] = hf_sd[key]
    hf_sd.setdefault("final_logits_bias", torch.zeros(1, config.vocab_size))
    with torch.device("meta"):
        names = [k for k in Bart(config).state_dict() if not (k == "lm_head.weight" and config.tie_embeddings)]
    missing = [_hf_name(k) for k in names if _hf_name(k) not in hf_sd]
    if missing:
        raise ValueError(f"{model_dir}: the BART checkpoint lacks {missing[:3]}; it does not match its config.json")
    return Bart.from_state_dict(config, {k: hf_sd[_hf_name(k)] for k in names}, str(model_dir))


def save_hf_bart(model: Bart, directory: str | os.PathLike, dtype: torch.dtype = torch.float32, token_ids: TokenIds | None = None) -> None:
    """Write `model` as a HF BartForConditionalGeneration folder."""
    sd = model.export_state_dict(dtype)
    write_hf_folder(directory, {_hf_name(k): v for k, v in sd.items()}, config_to_hf(model.config), token_ids)
