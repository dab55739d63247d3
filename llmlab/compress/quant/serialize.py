"""Saving and loading quantized models: `save_quantized`, `load_quantized`, `is_quantized_folder`.

A quantized folder is an llmlab checkpoint folder whose weights are the packed buffers:

    model_config.json     the model's config, exactly as `save_pretrained` writes it ("family" key included)
    model.safetensors     packed weights and scales (int8 / uint8 / float16) + the float tensors left (norms, biases)
    quantization.json     {"format": "llmlab-quantized", "scheme", "group_size", "symmetric",
                           "modules": {qualified name: class name}, "tied_embedding": bool}

A tied embedding is not stored twice: its `QuantEmbedding` is rebuilt on the LM head's tensors at load time.
Loading builds the model skeleton without initialising it (`skip_weight_init`: the float weights it allocates
are never touched, then dropped), swaps in the quantized modules and loads the rest strictly, so the loaded
model has the same modules and computes the same logits.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.compress.quant.linear import QUANT_LINEAR_CLASSES, NF4Linear, QuantEmbedding
from llmlab.compress.quant.quantize import quantized_modules
from llmlab.io import atomic_write_json
from llmlab.io.files import read_json
from llmlab.models.checkpoint_io import (
    load_safetensors,
    read_model_folder,
    skip_weight_init,
    write_model_folder,
)
from llmlab.models.registry import config_from_dict, family_of, get_family

QUANT_CONFIG = "quantization.json"
CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT = "llmlab-quantized"


def is_quantized_folder(folder: str | os.PathLike) -> bool:
    """True when `folder` holds a quantized llmlab checkpoint (`quantization.json` beside `model_config.json`)."""
    d = Path(folder)
    return d.is_dir() and (d / QUANT_CONFIG).is_file() and (d / CONFIG_NAME).is_file()


def _embed_path(model: nn.Module) -> str:
    return getattr(model, "module_paths", {}).get("embed_tokens", "embed_tokens")


def save_quantized(
    model: nn.Module, folder: str | os.PathLike, *, scheme: str, group_size: int | None, symmetric: bool = True
) -> None:
    """Write `model` (quantized by `quantize`, or loaded from GGUF blocks) into `folder` (created if needed)."""
    modules = quantized_modules(model)
    if not modules:
        raise ValueError("the model has no quantized layers; run llmlab.compress.quantize(model, scheme) first")
    embed = model.get_submodule(_embed_path(model))
    tied = isinstance(embed, QuantEmbedding) and embed.tied
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if tied:  # the embedding holds the head's tensors: store them once
        prefix = _embed_path(model) + "."
        sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
    if model.config.tie_embeddings:
        sd.pop("lm_head.weight", None)
    config = {"family": family_of(model).name, **dataclasses.asdict(model.config)}
    write_model_folder(folder, CONFIG_NAME, config, WEIGHTS_NAME, sd)
    quant = {
        "format": FORMAT,
        "scheme": scheme,
        "group_size": group_size,
        "symmetric": symmetric,
        "modules": modules,
        "tied_embedding": tied,
    }
    atomic_write_json(Path(folder) / QUANT_CONFIG, quant)


def read_quantization(folder: str | os.PathLike) -> dict[str, Any]:
    """The parsed `quantization.json` of `folder` (ValueError when it is not one llmlab wrote)."""
    path = Path(folder) / QUANT_CONFIG
    quant = read_json(path, "re-create it with llmlab quantize")
    if not isinstance(quant, dict) or quant.get("format") != FORMAT or not isinstance(quant.get("modules"), dict):
        raise ValueError(f"{path} is not an llmlab quantization file; re-create the folder with llmlab quantize")
    return quant


def _take(sd: dict[str, torch.Tensor], prefix: str, names: tuple[str, ...], path: Path) -> list[torch.Tensor | None]:
    """Pop `prefix.name` for each name (None for an absent `bias`; ValueError for any other absent tensor)."""
    out: list[torch.Tensor | None] = []
    for name in names:
        key = f"{prefix}.{name}"
        if key not in sd and name != "bias":
            raise ValueError(f"{path} has no tensor {key}; the folder is incomplete, re-create it")
        out.append(sd.pop(key, None))
    return out


def _build_module(cls_name: str, name: str, skeleton: nn.Module, sd: dict, path: Path) -> nn.Module:
    """The quantized module `name` of class `cls_name` from its tensors in `sd` (popped)."""
    if cls_name == "Int4Linear":
        return QUANT_LINEAR_CLASSES[cls_name](*_take(sd, name, ("packed", "scale", "zero", "bias"), path))
    if cls_name in ("Int8Linear", "DynamicInt8Linear"):
        return QUANT_LINEAR_CLASSES[cls_name](*_take(sd, name, ("qweight", "scale", "bias"), path))
    if cls_name == "NF4Linear":
        packed, absmax, bias = _take(sd, name, ("packed", "absmax", "bias"), path)
        k, n = skeleton.in_features, skeleton.out_features
        return NF4Linear(packed, absmax, k, n, k * n // absmax.numel(), bias)
    raise ValueError(f"{path / QUANT_CONFIG} names an unknown module class {cls_name!r} for {name}")


def _build_embedding(name: str, sd: dict, path: Path, head: nn.Module | None) -> QuantEmbedding:
    """A stored `QuantEmbedding`, or (tied) one on the LM head's tensors."""
    if head is not None:
        return QuantEmbedding.from_linear(head)  # type: ignore[arg-type]
    if f"{name}.packed" in sd:
        source = QUANT_LINEAR_CLASSES["Int4Linear"](*_take(sd, name, ("packed", "scale", "zero"), path))
    else:
        source = QUANT_LINEAR_CLASSES["Int8Linear"](*_take(sd, name, ("qweight", "scale"), path))
    return QuantEmbedding(source, tied=False)  # type: ignore[arg-type]


def load_quantized(folder: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Load a folder written by `save_quantized` as the same quantized model (eval mode).

    Raises:
        FileNotFoundError: a file is missing. ValueError: corrupt or inconsistent files.
    """
    d = Path(folder)
    cfg_dict, w_path = read_model_folder(d, CONFIG_NAME, WEIGHTS_NAME)
    quant = read_quantization(d)
    family = get_family(str(cfg_dict.get("family", "gpt")))
    config = config_from_dict(family.model_class.config_class, cfg_dict, family.name)
    with skip_weight_init():
        model = family.model_class(config)  # float weights allocated, never touched, replaced below
    sd = load_safetensors(w_path)
    embed_path = _embed_path(model)
    modules: dict[str, str] = quant["modules"]
    for name, cls_name in modules.items():
        if cls_name != "QuantEmbedding":
            model.set_submodule(name, _build_module(cls_name, name, model.get_submodule(name), sd, w_path))
    for name, cls_name in modules.items():
        if cls_name == "QuantEmbedding":
            head = model.lm_head if quant.get("tied_embedding") and name == embed_path else None
            model.set_submodule(name, _build_embedding(name, sd, w_path, head))
    load_float_tensors(model, sd, tuple(modules), w_path, config.tie_embeddings)
    return model.to(device).eval()


def load_float_tensors(model: nn.Module, sd: dict, quantized: tuple[str, ...], path: Path, tied: bool) -> None:
    """Load the tensors left in `sd` (norms, float layers) strictly into everything that is not quantized."""
    expected = {k: v for k, v in model.state_dict().items() if not any(k.startswith(name + ".") for name in quantized)}
    if tied:
        expected.pop("lm_head.weight", None)
        sd.pop("lm_head.weight", None)
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights in {path} do not match quantization.json: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in sd.items():
        if v.shape != expected[k].shape:
            raise ValueError(f"weights in {path}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    model.load_state_dict(sd, strict=False)
