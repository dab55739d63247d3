"""The PEFT method registry: each method's name, typed config class and how it is applied to a model.

    config = build_peft_config("lora", {"r": 8, "lora_alpha": 16})     # typed, checked: LoraConfig(r=8, ...)
    get_peft_model(model, config)                                      # applies PEFT_METHODS["lora"].apply

`build_peft_config` types the `peft:` section of a fine-tuning config through an OmegaConf structured config
of the method's dataclass, so a bad value is one line naming it (`peft.r: expected int, got 'abc'`), as is an
unknown key (with the method's valid keys) or an unknown method (with the registered ones).

Adding a method: write its config dataclass (a `PeftConfigBase` with a new `peft_type`), an
`apply(model, config)` that adds its layers to the frozen model, and `register_peft_method(PeftMethod(...))`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError
from torch import nn

from llmlab.peft import config as configs
from llmlab.peft.adapter import BottleneckLinear
from llmlab.peft.config import TASK_TYPE, PeftConfigBase
from llmlab.peft.ia3 import IA3Linear
from llmlab.peft.lora import LoRALinear
from llmlab.peft.prefix import PrefixEncoder, attach_prefix, text_prefixes
from llmlab.peft.prompt import PromptEmbedding, PromptHooks
from llmlab.peft.qlora import QLoRALinear
from llmlab.peft.targets import (
    attention_layers,
    default_targets,
    find_targets,
    input_embedding,
    name_matches,
    set_module,
    target_group,
)


@dataclass(frozen=True)
class PeftMethod:
    """One registered PEFT method.

    Attributes:
        name: the `method:` value of a fine-tuning config ("lora", ...).
        config_class: its typed config (the fields of the `peft:` section).
        apply: adds the method's trainable parts to a frozen model, in place (the config is validated).
    """

    name: str
    config_class: type[PeftConfigBase]
    apply: Callable[[nn.Module, Any], None]


PEFT_METHODS: dict[str, PeftMethod] = {}


def register_peft_method(method: PeftMethod) -> PeftMethod:
    """Add `method` to `PEFT_METHODS` (a method's name and config class are registered once)."""
    if method.name in PEFT_METHODS or any(m.config_class is method.config_class for m in PEFT_METHODS.values()):
        raise ValueError(f"PEFT method {method.name!r} ({method.config_class.__name__}) is already registered")
    PEFT_METHODS[method.name] = method
    return method


def peft_method(name: str) -> PeftMethod:
    """The registered method called `name`; ValueError listing the registered ones otherwise."""
    if name not in PEFT_METHODS:
        raise ValueError(f"unknown PEFT method {name!r}; registered: {', '.join(PEFT_METHODS)}")
    return PEFT_METHODS[name]


def method_of(config: PeftConfigBase) -> PeftMethod:
    """The registered method whose config class is exactly `type(config)`."""
    for method in PEFT_METHODS.values():
        if type(config) is method.config_class:
            return method
    raise ValueError(f"unsupported PEFT config {type(config).__name__}; registered: {', '.join(PEFT_METHODS)}")


def build_peft_config(method: str, values: Mapping[str, Any], key_prefix: str = "peft.") -> PeftConfigBase:
    """The typed, validated config of `method` from the `peft:` section `values` (a dict or DictConfig).

    Raises:
        ValueError: one line: an unknown method (listing the registered ones), an unknown key (listing the
            method's valid keys), a value of the wrong type (`peft.r: expected int, got 'abc'`) or an
            impossible setting (the config's `validate`).
    """
    cls = peft_method(method).config_class
    if isinstance(values, DictConfig):
        values = OmegaConf.to_container(values, resolve=False)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"{key_prefix}{unknown[0]}: unknown setting for method {method}; valid: {', '.join(sorted(fields))}"
        )
    for key, value in values.items():
        if isinstance(value, str) and "${" in value:  # no interpolation (it could copy environment variables)
            raise ValueError(f"{key_prefix}{key}: interpolations such as {value!r} are not allowed here")
    try:
        typed = OmegaConf.merge(OmegaConf.structured(cls), dict(values))
    except (ValidationError, ConfigKeyError) as e:
        key = str(e.full_key).split("[")[0].split(".")[0]
        expected = fields[key].type if key in fields else "a mapping of settings"
        raise ValueError(f"{key_prefix}{key}: expected {expected}, got {values.get(key)!r}") from None
    config = cls(**OmegaConf.to_container(typed))
    try:
        config.validate()
    except ValueError as e:
        raise ValueError(f"{key_prefix.rstrip('.')}: {e}" if key_prefix else str(e)) from None
    return config


def config_from_adapter_json(d: Mapping[str, Any]) -> PeftConfigBase:
    """The config of a saved `adapter_config.json` (ours or peft's; keys the method does not have are ignored).

    A saved LoRA adapter reads as `lora` (QLoRA adapters are saved as plain LoRA ones).
    """
    peft_type = d.get("peft_type")
    method = next((m for m in PEFT_METHODS.values() if m.config_class.peft_type == peft_type), None)
    if method is None:
        types = sorted({m.config_class.peft_type for m in PEFT_METHODS.values()})
        raise ValueError(f"adapter_config.json has peft_type={peft_type!r}; supported: {', '.join(types)}")
    names = {f.name for f in dataclasses.fields(method.config_class)}
    names.discard(getattr(method.config_class, "init_field", ""))  # the saved weights replace any "TEXT" init
    values = {k: v for k, v in d.items() if k in names}
    values["task_type"] = d.get("task_type") or TASK_TYPE  # peft leaves it None for LoRA made without one
    return build_peft_config(method.name, values, key_prefix="")


# ---------------------------------------------------------------------------------------------- apply
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def apply_lora(model: nn.Module, config: configs.LoraConfig) -> None:
    """LoRA (and QLoRA for a `QLoraConfig`) on `target_modules` (default: the `query_value` projections)."""
    if config.target_modules is None:
        config.target_modules = default_targets(model, ["query_value"], "LORA")
    layer_kw: dict[str, Any] = {}
    if isinstance(config, configs.QLoraConfig):
        layer_kw = dict(blocksize=config.blocksize, double_quant=config.double_quant,
                        compute_dtype=_DTYPES[config.compute_dtype])  # fmt: skip
    layer_class = QLoRALinear if isinstance(config, configs.QLoraConfig) else LoRALinear
    for name in find_targets(model, config.target_modules):
        layer = layer_class(model.get_submodule(name), config.r, config.scaling, config.lora_dropout,
                            use_dora=config.use_dora, init_zero=config.init_lora_weights, **layer_kw)  # fmt: skip
        layer.requires_grad_(False)
        for p in layer.adapter_parameters():
            p.requires_grad_(True)
        if config.bias == "lora_only" and layer.bias is not None:
            layer.bias.requires_grad_(True)
        set_module(model, name, layer)
    if config.bias == "all":
        for pname, p in model.named_parameters():
            if pname.endswith(".bias") and "lora_" not in pname:
                p.requires_grad_(True)


def apply_ia3(model: nn.Module, config: configs.IA3Config) -> None:
    """(IA)^3 on `target_modules` (default: `key_value` and `mlp_output`; the latter scale their input)."""
    if config.target_modules is None:
        config.target_modules = default_targets(model, ["key_value", "mlp_output"], "IA3")
        if config.feedforward_modules is None:
            config.feedforward_modules = [t for t in target_group(model, "mlp_output") if t in config.target_modules]
    ff = config.feedforward_modules or []
    for name in find_targets(model, config.target_modules):
        layer = IA3Linear(
            model.get_submodule(name), feedforward=name_matches(name, ff), init_ones=config.init_ia3_weights
        )
        layer.weight.requires_grad_(False)
        set_module(model, name, layer)


def apply_bottleneck(model: nn.Module, config: configs.AdapterConfig) -> None:
    """Bottleneck adapters after `target_modules`, or the output projections named by `locations`."""
    if config.target_modules is not None:
        names = find_targets(model, config.target_modules)
    else:  # the attention and/or MLP output projections of every block, in forward order
        groups = {"attn": "attention_output", "mlp": "mlp_output"}
        entries = [t for loc in config.locations for t in target_group(model, groups[loc])]
        names = find_targets(model, entries) if entries else []
        if not names:
            raise ValueError("found no attention/MLP output projections; set AdapterConfig.target_modules")
    for name in names:
        base = model.get_submodule(name)
        layer = BottleneckLinear(base, config.bottleneck_size, config.non_linearity, config.adapter_dropout)
        layer.weight.requires_grad_(False)
        set_module(model, name, layer)


def apply_prefix(model: nn.Module, config: configs.PrefixConfig) -> None:
    """Trainable key/value prefixes in every self-attention layer."""
    layers = attention_layers(model)
    if not layers:
        raise ValueError("prefix tuning needs llmlab.nn.attention.Attention layers; this model has none")
    if any(a.backend == "linear" for a in layers):
        raise ValueError("prefix tuning does not work with attention='linear'; use 'sdpa' or 'eager'")
    a, p = layers[0], next(model.parameters())
    encoder = PrefixEncoder(len(layers), a.n_kv_head, a.head_dim, config.num_virtual_tokens,
                            config.prefix_projection, config.encoder_hidden_size, config.prefix_init_std)  # fmt: skip
    encoder = encoder.to(device=p.device, dtype=p.dtype)
    text_ids = config.text_init_ids()
    if text_ids is not None:
        encoder.load_prefixes(text_prefixes(model, text_ids, config.num_virtual_tokens))
    attach_prefix(model, encoder, layers)


def apply_prompt(model: nn.Module, config: configs.PromptConfig) -> None:
    """A soft prompt: `model.embed_tokens` becomes a `PromptEmbedding`, hooks prepend the virtual tokens."""
    name, base = input_embedding(model)
    emb = PromptEmbedding(base, config.num_virtual_tokens, config.text_init_ids())
    emb.weight.requires_grad_(False)
    set_module(model, name, emb)
    hooks = PromptHooks(emb)
    hooks.attach(model)
    model._peft_prompt_hooks = hooks


for _method in (
    PeftMethod("lora", configs.LoraConfig, apply_lora),
    PeftMethod("qlora", configs.QLoraConfig, apply_lora),
    PeftMethod("adapter", configs.AdapterConfig, apply_bottleneck),
    PeftMethod("prefix", configs.PrefixConfig, apply_prefix),
    PeftMethod("prompt", configs.PromptConfig, apply_prompt),
    PeftMethod("ia3", configs.IA3Config, apply_ia3),
):
    register_peft_method(_method)
