"""Hugging Face BERT / RoBERTa / ALBERT checkpoints <-> llmlab `Bert` (pure tensor/JSON mapping, no `transformers`).

Read: `BertModel`, `BertForMaskedLM`, `BertForPreTraining`, `BertForSequenceClassification` (the encoder only),
`RobertaModel`, `RobertaForMaskedLM`, `AlbertModel`, `AlbertForMaskedLM`, `AlbertForPreTraining` (and
sentence-transformers folders, which hold a bare `BertModel`). Written: `*Model`, `*ForMaskedLM` or
`*ForPreTraining`, whichever matches the heads the model has.

Tensor names (HF -> llmlab), after dropping the `bert.` / `roberta.` / `albert.` prefix:
- BERT/RoBERTa layer i: `encoder.layer.{i}.attention.self.{query,key,value}` -> `blocks.{i}.attn.{q,k,v}_proj`,
  `attention.output.dense` -> `attn.o_proj`, `attention.output.LayerNorm` -> `ln_1`, `intermediate.dense` ->
  `mlp.c_fc`, `output.dense` -> `mlp.c_proj`, `output.LayerNorm` -> `ln_2`; `pooler.dense` -> `pooler`.
- ALBERT group g: `encoder.albert_layer_groups.{g}.albert_layers.0.attention.{query,key,value,dense,LayerNorm}`,
  `ffn`, `ffn_output`, `full_layer_layer_norm`; `encoder.embedding_hidden_mapping_in` -> `embeddings.project`;
  `pooler` -> `pooler`.
- MLM heads: BERT `cls.predictions.{transform.dense, transform.LayerNorm, decoder, bias}`, RoBERTa
  `lm_head.{dense, layer_norm, decoder, bias}`, ALBERT `predictions.{dense, LayerNorm, decoder, bias}` ->
  `lm_head.{dense, LayerNorm, decoder, bias}`. NSP `cls.seq_relationship` / SOP `sop_classifier.classifier` ->
  `sentence_classifier`.
"""

from __future__ import annotations

import os
import re
from typing import Any

import torch

from llmlab.models.bert.config import ACTIVATIONS, BertConfig
from llmlab.models.bert.model import Bert
from llmlab.models.formats.hf import TokenIds, read_hf_config, read_hf_weights, write_hf_folder

_PREFIX = {"bert": "Bert", "roberta": "Roberta", "albert": "Albert"}
HF_ARCHITECTURES = tuple(
    f"{_PREFIX[v]}{kind}"
    for v, kinds in (
        ("bert", ("Model", "ForMaskedLM", "ForPreTraining", "ForSequenceClassification")),
        ("roberta", ("Model", "ForMaskedLM")),
        ("albert", ("Model", "ForMaskedLM", "ForPreTraining")),
    )
    for kind in kinds
)
HF_MODEL_TYPES = ("bert", "roberta", "albert")

_LAYER = {  # BERT/RoBERTa layer suffix -> llmlab
    "attention.self.query": "attn.q_proj",
    "attention.self.key": "attn.k_proj",
    "attention.self.value": "attn.v_proj",
    "attention.output.dense": "attn.o_proj",
    "attention.output.LayerNorm": "ln_1",
    "intermediate.dense": "mlp.c_fc",
    "output.dense": "mlp.c_proj",
    "output.LayerNorm": "ln_2",
}
_ALBERT_LAYER = {
    "attention.query": "attn.q_proj",
    "attention.key": "attn.k_proj",
    "attention.value": "attn.v_proj",
    "attention.dense": "attn.o_proj",
    "attention.LayerNorm": "ln_1",
    "ffn": "mlp.c_fc",
    "ffn_output": "mlp.c_proj",
    "full_layer_layer_norm": "ln_2",
}
_HEADS = {  # variant -> (HF module prefix -> llmlab)
    "bert": {
        "pooler.dense": "pooler",
        "cls.predictions.transform.dense": "lm_head.dense",
        "cls.predictions.transform.LayerNorm": "lm_head.LayerNorm",
        "cls.predictions.decoder": "lm_head.decoder",
        "cls.predictions": "lm_head",
        "cls.seq_relationship": "sentence_classifier",
    },
    "roberta": {
        "pooler.dense": "pooler",
        "lm_head.dense": "lm_head.dense",
        "lm_head.layer_norm": "lm_head.LayerNorm",
        "lm_head.decoder": "lm_head.decoder",
        "lm_head": "lm_head",
    },
    "albert": {
        "pooler": "pooler",
        "encoder.embedding_hidden_mapping_in": "embeddings.project",
        "predictions.dense": "lm_head.dense",
        "predictions.LayerNorm": "lm_head.LayerNorm",
        "predictions.decoder": "lm_head.decoder",
        "predictions": "lm_head",
        "sop_classifier.classifier": "sentence_classifier",
    },
}
_LAYER_RE = re.compile(r"encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_ALBERT_RE = re.compile(r"encoder\.albert_layer_groups\.(\d+)\.albert_layers\.0\.(.+)\.(weight|bias)$")


def _variant(hf: dict[str, Any]) -> str:
    model_type = hf.get("model_type")
    if model_type in HF_MODEL_TYPES:
        return str(model_type)
    arch = (hf.get("architectures") or [""])[0]
    for variant, prefix in _PREFIX.items():
        if arch.startswith(prefix):
            return variant
    raise ValueError(f"config.json has model_type {model_type!r}; expected one of: {', '.join(HF_MODEL_TYPES)}")


def _heads(arch: str) -> dict[str, bool]:
    """Which heads a HF architecture has (HF's *ForMaskedLM builds no pooler)."""
    if arch.endswith("ForMaskedLM"):
        return {"pooler": False, "mlm_head": True, "sentence_head": False}
    if arch.endswith("ForPreTraining"):
        return {"pooler": True, "mlm_head": True, "sentence_head": True}
    return {"pooler": True, "mlm_head": False, "sentence_head": False}


def config_from_hf(hf: dict[str, Any]) -> BertConfig:
    """Translate a HF BERT/RoBERTa/ALBERT `config.json` dict into a `BertConfig` (ValueError for variants
    llmlab does not implement: relative position embeddings, ALBERT inner groups > 1, other activations)."""
    variant = _variant(hf)
    arch = (hf.get("architectures") or [f"{_PREFIX[variant]}Model"])[0]
    if hf.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"position_embedding_type {hf['position_embedding_type']!r} is not supported; llmlab's BERT uses 'absolute'")
    if int(hf.get("inner_group_num", 1)) != 1:
        raise ValueError("ALBERT inner_group_num > 1 is not supported by llmlab's BERT family")
    act = str(hf.get("hidden_act", "gelu_new" if variant == "albert" else "gelu"))
    if act not in ACTIVATIONS:
        raise ValueError(f"hidden_act {act!r} is not supported; llmlab's BERT family implements: {', '.join(ACTIVATIONS)}")
    try:
        cfg = BertConfig(
            variant=variant,
            vocab_size=int(hf["vocab_size"]),
            hidden_size=int(hf["hidden_size"]),
            num_hidden_layers=int(hf["num_hidden_layers"]),
            num_attention_heads=int(hf["num_attention_heads"]),
            intermediate_size=int(hf["intermediate_size"]),
            hidden_act=act,
            hidden_dropout_prob=float(hf.get("hidden_dropout_prob", 0.1)),
            attention_probs_dropout_prob=float(hf.get("attention_probs_dropout_prob", 0.1)),
            max_position_embeddings=int(hf.get("max_position_embeddings", 512)),
            type_vocab_size=int(hf.get("type_vocab_size", 2)),
            layer_norm_eps=float(hf.get("layer_norm_eps", 1e-12)),
            initializer_range=float(hf.get("initializer_range", 0.02)),
            pad_token_id=int(hf.get("pad_token_id") if hf.get("pad_token_id") is not None else 0),
            embedding_size=int(hf["embedding_size"]) if variant == "albert" else None,
            num_hidden_groups=int(hf.get("num_hidden_groups", 1)) if variant == "albert" else 1,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", True)),
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            extra={"hf_architecture": arch},
            **_heads(arch),
        )
    except KeyError as e:
        raise ValueError(f"HF {variant} config.json lacks the key {e}") from None
    cfg.validate()
    return cfg


def _to_llmlab_name(name: str, variant: str) -> str | None:
    """The llmlab name of a HF tensor name (prefix already removed); None for tensors llmlab drops."""
    if name.endswith(("position_ids", "token_type_ids")) or name.endswith("decoder.bias"):
        return None  # buffers, and the decoder bias that is the same tensor as `*.bias`
    if name.startswith("embeddings."):
        return name
    m = (_ALBERT_RE if variant == "albert" else _LAYER_RE).match(name)
    if m:
        table = _ALBERT_LAYER if variant == "albert" else _LAYER
        if m.group(2) in table:
            return f"blocks.{m.group(1)}.{table[m.group(2)]}.{m.group(3)}"
    module, _, leaf = name.rpartition(".")
    if module in _HEADS[variant]:
        return f"{_HEADS[variant][module]}.{leaf}"
    if name in _HEADS[variant]:  # the bare MLM bias (`cls.predictions.bias`)
        return _HEADS[variant][name]
    return name  # unknown: kept as it is, so the strict load names it as unexpected


def state_dict_from_hf(sd: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """HF tensors -> llmlab names (the `bert.`/`roberta.`/`albert.` prefix removed; classifier heads dropped)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        name = key.removeprefix(f"{variant}.")
        if name.startswith("classifier."):  # *ForSequenceClassification: the encoder is read, its head is not
            continue
        new = _to_llmlab_name(name, variant)
        if new is not None:
            out[new] = value
    return out


def hf_architecture(config: BertConfig) -> str:
    """The HF class that matches the model's heads."""
    kind = "Model"
    if config.mlm_head:
        kind = "ForPreTraining" if config.sentence_head else "ForMaskedLM"
    if config.variant == "roberta" and kind == "ForPreTraining":
        raise ValueError("RoBERTa has no NSP head in transformers; build the model with sentence_head=False")
    return _PREFIX[config.variant] + kind


def state_dict_to_hf(model: Bert, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """llmlab tensors -> HF names for `hf_architecture(config)` (the tied decoder written out as a copy)."""
    c = model.config
    variant, arch = c.variant, hf_architecture(c)
    sd = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    layer_table = {v: k for k, v in (_ALBERT_LAYER if variant == "albert" else _LAYER).items()}
    heads = {v: k for k, v in reversed(_HEADS[variant].items())}
    prefix = "" if arch.endswith("Model") else f"{variant}."
    out: dict[str, torch.Tensor] = {}
    for name, value in sd.items():
        if name.startswith("embeddings.") and not name.startswith("embeddings.project"):
            out[prefix + name] = value
        elif name.startswith("blocks."):
            _, idx, rest = name.split(".", 2)
            module, _, leaf = rest.rpartition(".")
            if variant == "albert":
                out[f"{prefix}encoder.albert_layer_groups.{idx}.albert_layers.0.{layer_table[module]}.{leaf}"] = value
            else:
                out[f"{prefix}encoder.layer.{idx}.{layer_table[module]}.{leaf}"] = value
        else:
            module, _, leaf = name.rpartition(".")
            hf_name = f"{heads[module]}.{leaf}" if module in heads else heads[name]
            is_encoder_part = hf_name.startswith(("pooler", "encoder."))
            out[(prefix if is_encoder_part else "") + hf_name] = value
    if c.mlm_head:  # transformers also stores the decoder's bias (the same tensor as the head's bias)
        bias_key = {"bert": "cls.predictions.decoder.bias", "roberta": "lm_head.decoder.bias", "albert": "predictions.decoder.bias"}
        out[bias_key[variant]] = sd["lm_head.bias"]
    out = {k: v.clone() for k, v in out.items()}  # no shared storage (safetensors refuses it)
    return {k: v.to(dtype) for k, v in out.items()} if dtype is not None else out


def config_to_hf(config: BertConfig, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """The HF `config.json` dict for `config` (loadable by `transformers.AutoConfig`)."""
    c = config
    out: dict[str, Any] = {
        "architectures": [hf_architecture(c)],
        "model_type": c.variant,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size,
        "hidden_act": c.hidden_act,
        "hidden_dropout_prob": c.hidden_dropout_prob,
        "attention_probs_dropout_prob": c.attention_probs_dropout_prob,
        "max_position_embeddings": c.max_position_embeddings,
        "type_vocab_size": c.type_vocab_size,
        "layer_norm_eps": c.layer_norm_eps,
        "initializer_range": c.initializer_range,
        "pad_token_id": c.pad_token_id,
        "bos_token_id": c.bos_token_id,
        "eos_token_id": c.eos_token_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": c.tie_word_embeddings,
        "torch_dtype": str(dtype).removeprefix("torch."),
    }
    if c.variant == "albert":
        out.update(embedding_size=c.embed_width, num_hidden_groups=c.num_hidden_groups, inner_group_num=1)
    return out


def load_hf_bert(model_dir: str | os.PathLike, device: torch.device | str = "cpu") -> Bert:
    """Build a `Bert` from a folder written by a HF BERT/RoBERTa/ALBERT `save_pretrained`."""
    config = config_from_hf(read_hf_config(model_dir))
    sd = state_dict_from_hf(read_hf_weights(model_dir), config.variant)
    if not config.tie_word_embeddings and config.mlm_head and "lm_head.decoder.weight" not in sd:
        raise ValueError(f"{model_dir}: tie_word_embeddings is false but the checkpoint has no decoder weight")
    return Bert.from_state_dict(config, sd, str(model_dir)).to(device)


def save_hf_bert(
    model: Bert, directory: str | os.PathLike, dtype: torch.dtype = torch.float32, token_ids: TokenIds | None = None
) -> None:
    """Write `config.json` and `model.safetensors` that `transformers` loads as `hf_architecture(config)`."""
    write_hf_folder(directory, state_dict_to_hf(model, dtype), config_to_hf(model.config, dtype), token_ids)
