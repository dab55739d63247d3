"""Hugging Face `T5ForConditionalGeneration` checkpoints <-> llmlab `T5` (tensor/JSON mapping, no `transformers`).

Tied vs untied head: T5 v1.0 ties the LM head to the shared embedding and rescales the decoder output by
d_model**-0.5; v1.1 (and flan-t5) keep a separate `lm_head.weight` and no rescale. transformers 4.x says so
with `tie_word_embeddings`; transformers 5 always writes `tie_word_embeddings: true` and says it with
`scale_decoder_outputs` (reading an untied `lm_head.weight` from the checkpoint). Both are read; both are written.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from llmlab.models.formats.hf import TokenIds, read_hf_config, read_hf_weights, write_hf_folder
from llmlab.models.t5.config import T5Config
from llmlab.models.t5.model import T5

HF_ARCHITECTURE = "T5ForConditionalGeneration"
_SUBLAYER_ATTN = {"q_proj": "q", "k_proj": "k", "v_proj": "v", "o_proj": "o"}


def config_from_hf(hf: dict[str, Any]) -> T5Config:
    """A `T5Config` from a HF T5 `config.json` dict (ValueError for variants llmlab does not implement)."""
    proj = hf.get("feed_forward_proj", "relu")
    if proj not in ("relu", "gated-gelu"):
        raise ValueError(f"T5 feed_forward_proj {proj!r} is not supported; llmlab reads 'relu' and 'gated-gelu'")
    tied = bool(hf.get("scale_decoder_outputs", hf.get("tie_word_embeddings", True)))
    return T5Config(
        vocab_size=int(hf["vocab_size"]), n_embd=int(hf["d_model"]), n_head=int(hf["num_heads"]),
        head_dim=int(hf["d_kv"]), d_ff=int(hf["d_ff"]), n_layer=int(hf["num_layers"]),
        n_decoder_layer=_decoder_layers(hf.get("num_decoder_layers"), int(hf["num_layers"])),
        dropout=float(hf.get("dropout_rate", 0.1)), norm_eps=float(hf.get("layer_norm_epsilon", 1e-6)),
        tie_embeddings=tied, pad_token_id=int(hf.get("pad_token_id", 0)), eos_token_id=int(hf.get("eos_token_id", 1)),
        decoder_start_token_id=int(hf.get("decoder_start_token_id", hf.get("pad_token_id", 0))), mlp=proj,
        relative_attention_num_buckets=int(hf.get("relative_attention_num_buckets", 32)),
        relative_attention_max_distance=int(hf.get("relative_attention_max_distance", 128)),
    )  # fmt: skip


def _decoder_layers(n: Any, n_encoder: int) -> int | None:
    """llmlab's n_decoder_layer: None when the decoder has as many layers as the encoder."""
    return None if n is None or int(n) == n_encoder else int(n)


def config_to_hf(c: T5Config) -> dict[str, Any]:
    """The HF `config.json` dict of a `T5Config`."""
    return {
        "architectures": [HF_ARCHITECTURE], "model_type": "t5", "vocab_size": c.vocab_size, "d_model": c.n_embd,
        "num_heads": c.n_head, "d_kv": c.head_dim, "d_ff": c.d_ff, "num_layers": c.n_layer,
        "num_decoder_layers": c.decoder_layers, "dropout_rate": c.dropout, "layer_norm_epsilon": c.norm_eps,
        "feed_forward_proj": c.mlp, "tie_word_embeddings": c.tie_embeddings, "scale_decoder_outputs": c.tie_embeddings,
        "relative_attention_num_buckets": c.relative_attention_num_buckets,
        "relative_attention_max_distance": c.relative_attention_max_distance, "is_encoder_decoder": True,
        "pad_token_id": c.pad_token_id, "eos_token_id": c.eos_token_id, "decoder_start_token_id": c.decoder_start_token_id,
    }  # fmt: skip


def hf_names(c: T5Config) -> dict[str, str]:
    """llmlab parameter name -> HF name, for every llmlab parameter (the head only when untied)."""
    mlp = {"c_fc": "wi", "c_proj": "wo"} if c.mlp == "relu" else {"gate_proj": "wi_0", "up_proj": "wi_1", "down_proj": "wo"}
    names = {"shared.weight": "shared.weight"}
    for stack, n_layer in (("encoder", c.n_layer), ("decoder", c.decoder_layers)):
        names[f"{stack}.positions.weight"] = f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
        names[f"{stack}.final_norm.weight"] = f"{stack}.final_layer_norm.weight"
        for i in range(n_layer):
            ours, hf = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
            subs = [("self_attn", "0.SelfAttention", "0")]
            subs += [("cross_attn", "1.EncDecAttention", "1")] if stack == "decoder" else []
            for part, hf_part, idx in subs:
                names.update({f"{ours}.{part}.{a}.weight": f"{hf}.{hf_part}.{b}.weight" for a, b in _SUBLAYER_ATTN.items()})
                names[f"{ours}.{part}_norm.weight"] = f"{hf}.{idx}.layer_norm.weight"
            ff = "2" if stack == "decoder" else "1"
            names.update({f"{ours}.mlp.{a}.weight": f"{hf}.{ff}.DenseReluDense.{b}.weight" for a, b in mlp.items()})
            names[f"{ours}.mlp_norm.weight"] = f"{hf}.{ff}.layer_norm.weight"
    if not c.tie_embeddings:
        names["lm_head.weight"] = "lm_head.weight"
    return names


def _embedding(sd: dict[str, torch.Tensor], source: str) -> torch.Tensor:
    for key in ("shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        if key in sd:
            return sd[key]
    raise ValueError(f"{source}: no shared.weight (token embedding) in the checkpoint; re-save it with transformers")


def load_hf_t5(model_dir: str | os.PathLike) -> T5:
    """An llmlab `T5` from a HF T5ForConditionalGeneration folder (ValueError on a mismatch)."""
    config = config_from_hf(read_hf_config(model_dir))
    hf_sd = read_hf_weights(model_dir)
    hf_sd["shared.weight"] = _embedding(hf_sd, str(model_dir))
    if not config.tie_embeddings and "lm_head.weight" not in hf_sd:
        hf_sd["lm_head.weight"] = hf_sd["shared.weight"]
    names = hf_names(config)
    missing = [h for h in names.values() if h not in hf_sd]
    if missing:
        raise ValueError(f"{model_dir}: the T5 checkpoint lacks {missing[:3]}; it does not match its config.json")
    return T5.from_state_dict(config, {ours: hf_sd[hf] for ours, hf in names.items()}, str(model_dir))


def save_hf_t5(model: T5, directory: str | os.PathLike, dtype: torch.dtype = torch.float32, token_ids: TokenIds | None = None) -> None:
    """Write `model` as a HF T5ForConditionalGeneration folder."""
    sd = model.export_state_dict(dtype)
    hf_sd = {hf: sd[ours] for ours, hf in hf_names(model.config).items()}
    write_hf_folder(directory, hf_sd, config_to_hf(model.config), token_ids)
