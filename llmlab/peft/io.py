"""Save and load adapters in the Hugging Face PEFT format.

A saved adapter is a folder with
- `adapter_config.json`: the config (`peft_type`, `r`, `lora_alpha`, `target_modules`,
  `base_model_name_or_path`, `task_type: CAUSAL_LM`, ...), readable by `peft.PeftConfig.from_pretrained`;
- `adapter_model.safetensors`: only the adapter tensors, under peft's key names: the module name in the
  Hugging Face model prefixed by `base_model.model.` (e.g. for LoRA on Llama
  `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`); prefix and prompt tuning store one
  `prompt_embeddings` matrix. llmlab's module names equal HF's for both families (GPT-2 and Llama), so no
  renaming is needed. HF GPT-2 uses `Conv1D` (transposed weights), but peft stores LoRA A/B for Conv1D
  exactly as for `nn.Linear` (and sets `fan_in_fan_out=True`, which we write too), so the tensors are the same.

A fingerprint of the base model (model class, architecture config, shapes of the adapted weights) is kept in
the safetensors metadata; loading onto a different base raises a ValueError instead of silently computing
garbage. Adapters made by peft have no fingerprint and are checked by key names and shapes only.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.io import building_dir, read_json
from llmlab.peft.base import PeftLinear
from llmlab.peft.config import LoraConfig, PeftConfigBase, PrefixConfig, PromptConfig
from llmlab.peft.methods import config_from_adapter_json
from llmlab.peft.model import get_peft_model
from llmlab.peft.qlora import QLoRALinear

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
PREFIX = "base_model.model."
PROMPT_KEY = "prompt_embeddings"
# Config fields that do not change the weights or their meaning: ignored by the fingerprint check.
_IGNORED_CONFIG = {"dropout", "attention", "attention_dropout", "extra", "initializer_range", "bos_token_id",
                   "eos_token_id", "pad_token_id", "name", "window_size", "n_global_tokens"}  # fmt: skip
_QLORA_ONLY = ("quant_type", "blocksize", "double_quant", "compute_dtype")
# Init-only settings: unknown to peft, or (a "TEXT" init) refused by peft without a tokenizer name.
_INIT_ONLY = (
    "init_token_ids",
    "prefix_init_std",
    "prefix_tuning_init",
    "prefix_tuning_init_text",
    "prompt_tuning_init",
)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors under peft's key names (trainable parameters; prompt/prefix as `prompt_embeddings`)."""
    _config(model)
    if hasattr(model, "prefix_encoder"):
        return {PROMPT_KEY: model.prefix_encoder.prefixes().detach()}
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith(PROMPT_KEY):  # prompt tuning: the soft prompt only
            out[PROMPT_KEY] = p.detach()
        else:
            out[PREFIX + name] = p.detach()
    return out


def base_architecture(model: nn.Module, stored: dict[str, Any] | None = None) -> dict[str, Any]:
    """The model's *resolved* architecture as a plain dict (fields that do not change the weights left out).

    Resolved: fields whose None means "the default" (`head_dim`, `num_key_value_heads`, `n_kv_head`, ...) carry
    their effective value (`config.resolved()`), so a base that went through `llmlab convert --format hf` and back
    fingerprints like the preset it came from. `stored`: a fingerprint's config saved by an older llmlab (maybe
    unresolved) — it is read into this model's config class and resolved the same way before comparing.
    """
    cfg = getattr(model, "config", None)
    extra: dict[str, Any] = {}
    if cfg is not None and stored is not None and dataclasses.is_dataclass(cfg):
        names = {f.name for f in dataclasses.fields(cfg)}
        extra = {k: v for k, v in stored.items() if k not in names}
        try:
            cfg = dataclasses.replace(cfg, **{k: v for k, v in stored.items() if k in names})
        except (TypeError, ValueError):
            return {k: v for k, v in stored.items() if k not in _IGNORED_CONFIG}
    if cfg is not None and hasattr(cfg, "resolved"):
        cfg = cfg.resolved()
    raw = dict(cfg.to_dict()) if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg) if cfg is not None else {}
    raw = json.loads(json.dumps({**raw, **extra}))  # as stored: tuples become lists
    return {k: v for k, v in raw.items() if k not in _IGNORED_CONFIG}


def fingerprint(model: nn.Module) -> dict[str, Any]:
    """What identifies a base model for an adapter: class, architecture config, shapes of adapted weights."""
    cfg = base_architecture(model)
    shapes = {}
    for name, m in model.named_modules():
        if isinstance(m, QLoRALinear):
            shapes[name] = list(m.weight_shape)
        elif isinstance(m, PeftLinear):
            shapes[name] = list(m.weight.shape)
    return {"model_class": type(model).__name__, "config": cfg, "shapes": shapes}


def save_adapter(model: nn.Module, directory: str | os.PathLike, base_model_name_or_path: str | None = None) -> Path:
    """Write `adapter_config.json` + `adapter_model.safetensors` into `directory` (atomically, as a folder).

    Args:
        model: a model returned by `get_peft_model`.
        directory: destination folder (replaced if it exists).
        base_model_name_or_path: recorded in the config (default: the config's value).

    Returns:
        The folder path.
    """
    from safetensors.torch import save_file

    config = _config(model)
    d = _config_dict(model, config, base_model_name_or_path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in adapter_state_dict(model).items()}
    meta = {"format": "pt", "llmlab_fingerprint": json.dumps(fingerprint(model))}
    out = Path(directory)
    with building_dir(out) as tmp:
        save_file(tensors, str(tmp / WEIGHTS_NAME), metadata=meta)
        (tmp / CONFIG_NAME).write_text(json.dumps(d, indent=2, sort_keys=True), encoding="utf-8")
    return out


def _config_dict(model: nn.Module, config: PeftConfigBase, base_name: str | None) -> dict[str, Any]:
    """`adapter_config.json` contents, with the fields peft needs for the method."""
    d = config.to_dict()
    d["base_model_name_or_path"] = base_name or config.base_model_name_or_path
    for k in (*_QLORA_ONLY, *_INIT_ONLY):  # QLoRA adapters are plain LoRA adapters; init settings are init-only
        d.pop(k, None)
    if isinstance(config, LoraConfig) and getattr(type(model), "peft_fan_in_fan_out", False):
        d["fan_in_fan_out"] = True  # the family's HF class uses Conv1D (GPT-2, see the module docstring)
    if isinstance(config, (PrefixConfig, PromptConfig)):
        d["num_transformer_submodules"] = 1
        if isinstance(config, PrefixConfig):
            enc = model.prefix_encoder
            d.update(token_dim=enc.token_dim, num_layers=enc.n_layer, num_attention_heads=enc.n_kv_head)
            d["prefix_projection"] = False  # saved in exported form: the prefixes themselves
        else:
            emb = next(m for m in model.modules() if hasattr(m, "prompt_embeddings"))
            d["token_dim"] = emb.embedding_dim
    return d


def _adapter_json(directory: str | os.PathLike) -> tuple[dict[str, Any], Path]:
    """The parsed `adapter_config.json` of an adapter folder, and its path.

    Raises:
        FileNotFoundError: no `adapter_config.json`. ValueError: it is not valid UTF-8 JSON.
    """
    cfg_path = Path(directory) / CONFIG_NAME
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path} not found; pass a folder written by `llmlab finetune` (or by peft)")
    return read_json(cfg_path, "re-save the adapter"), cfg_path


def adapter_base_model(directory: str | os.PathLike) -> str:
    """The `base_model_name_or_path` recorded in an adapter's `adapter_config.json`.

    Raises:
        FileNotFoundError: no `adapter_config.json`. ValueError: invalid JSON or no base recorded.
    """
    saved, cfg_path = _adapter_json(directory)
    if not saved.get("base_model_name_or_path"):
        raise ValueError(f"{cfg_path} does not name its base model; pass the base model explicitly")
    return str(saved["base_model_name_or_path"])


def read_adapter(directory: str | os.PathLike) -> tuple[PeftConfigBase, dict[str, torch.Tensor], dict | None]:
    """Read a saved adapter: (config, tensors with peft keys, llmlab fingerprint or None)."""
    from safetensors import safe_open

    saved, cfg_path = _adapter_json(directory)
    w_path = cfg_path.with_name(WEIGHTS_NAME)
    if not w_path.is_file():
        raise FileNotFoundError(f"{w_path} not found; pass a folder written by save_adapter (or by peft)")
    try:
        config = config_from_adapter_json(saved)
    except ValueError as e:
        raise ValueError(f"{cfg_path}: {e}") from None
    try:
        with safe_open(str(w_path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            meta = f.metadata() or {}
    except Exception as e:  # safetensors raises its own error type on corrupt files
        raise ValueError(f"{w_path} is corrupt or truncated ({str(e).splitlines()[0]}); re-save it") from None
    fp = json.loads(meta["llmlab_fingerprint"]) if "llmlab_fingerprint" in meta else None
    return config, tensors, fp


def load_adapter(model: nn.Module, directory: str | os.PathLike, config: PeftConfigBase | None = None) -> nn.Module:
    """Load an adapter saved by `save_adapter` or by HF peft onto `model`; return the model.

    If `model` has no adapters yet they are created from the saved config (or from `config`, e.g. a
    `QLoraConfig` to load a LoRA adapter onto a 4-bit base); if it has, their weights are overwritten.

    Raises:
        FileNotFoundError: missing files. ValueError: the adapter was made for another base model or does
            not match the model's adapters (names or shapes).
    """
    saved_config, tensors, fp = read_adapter(directory)
    if fp is not None:
        _check_fingerprint(model, fp, directory)
    if getattr(model, "peft_config", None) is None:
        get_peft_model(model, config or saved_config)
    if isinstance(model.peft_config, (PrefixConfig, PromptConfig)):
        _load_prompt(model, tensors, directory)
    else:
        _load_named(model, tensors, directory)
    return model


def _load_named(model: nn.Module, tensors: dict[str, torch.Tensor], directory: str | os.PathLike) -> None:
    expected = adapter_state_dict(model)
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"adapter in {directory} does not fit this model: missing {missing[:3]}, unexpected {unexpected[:3]}; "
            "was it made for another base model or another config?"
        )
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, value in tensors.items():
            p = params[key.removeprefix(PREFIX)]
            if p.shape != value.shape:
                raise ValueError(
                    f"adapter in {directory}: {key} has shape {tuple(value.shape)}, the model needs {tuple(p.shape)}"
                )
            p.copy_(value)


def _load_prompt(model: nn.Module, tensors: dict[str, torch.Tensor], directory: str | os.PathLike) -> None:
    if set(tensors) != {PROMPT_KEY}:
        raise ValueError(f"adapter in {directory} should hold only '{PROMPT_KEY}', found {sorted(tensors)[:3]}")
    value = tensors[PROMPT_KEY]
    if hasattr(model, "prefix_encoder"):
        model.prefix_encoder.load_prefixes(value)
        return
    emb = next(m for m in model.modules() if hasattr(m, "prompt_embeddings"))
    if emb.prompt_embeddings.shape != value.shape:
        raise ValueError(
            f"adapter in {directory}: prompt has shape {tuple(value.shape)}, "
            f"the model needs {tuple(emb.prompt_embeddings.shape)}"
        )
    with torch.no_grad():
        emb.prompt_embeddings.copy_(value)


def _check_fingerprint(model: nn.Module, fp: dict[str, Any], directory: str | os.PathLike) -> None:
    """ValueError when `model` is not the kind of base the adapter was trained on."""
    mine = fingerprint(model)
    if fp.get("model_class") != mine["model_class"]:
        raise ValueError(
            f"adapter in {directory} was made for a {fp.get('model_class')} model, not a {mine['model_class']}"
        )
    theirs_cfg, my_cfg = base_architecture(model, fp.get("config", {})), mine["config"]
    diff = sorted(k for k in set(theirs_cfg) | set(my_cfg) if theirs_cfg.get(k) != my_cfg.get(k))
    # Name a field the user set first (hidden_size), not one derived from it (head_dim).
    cfg = model.config
    unresolved = dict(cfg.to_dict()) if hasattr(cfg, "to_dict") else dataclasses.asdict(cfg)
    diff.sort(key=lambda k: unresolved.get(k) is None)
    if diff:
        k = diff[0]
        raise ValueError(
            f"adapter in {directory} was made for another base model: config {k}={theirs_cfg.get(k)!r} there, "
            f"{my_cfg.get(k)!r} here (differs in: {', '.join(diff[:5])})"
        )
    modules = dict(model.named_modules())
    for name, shape in fp.get("shapes", {}).items():
        m = modules.get(name)
        if m is None:
            raise ValueError(f"adapter in {directory} targets {name}, which this model does not have")
        have = list(m.weight_shape) if isinstance(m, QLoRALinear) else list(m.weight.shape)
        if have != shape:
            raise ValueError(f"adapter in {directory}: {name} had weight shape {shape} there, {have} here")


def _config(model: nn.Module) -> PeftConfigBase:
    config = getattr(model, "peft_config", None)
    if config is None:
        raise ValueError("this model has no adapters; call get_peft_model(model, config) first")
    return config
