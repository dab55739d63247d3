"""The model-family registry and the shared preset registry.

A family (`gpt`, `llama`; later `bert`, `t5`, `clip`) is one `ModelFamily` record: its config and model
classes, how Hugging Face and GGUF name it, its readers/writers and its presets. Each family registers itself
from its own package (`llmlab/models/<family>/__init__.py`):

    register_family(ModelFamily(
        name="llama", config_class=LlamaConfig, model_class=Llama, presets=PRESETS,
        hf_architectures=("LlamaForCausalLM",), hf_model_types=("llama",), load_hf=load_hf_llama,
        save_hf=save_hf_llama, gguf_architecture="llama", load_gguf=load_gguf_llama, save_gguf=save_gguf_llama,
    ))

Format-level code (`llmlab.models.formats.dispatch`) looks families up here and never names one.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from llmlab.config import Registry

C = TypeVar("C")


def _matches(value: object, hint: Any) -> bool:
    """Whether `value` fits the type annotation `hint` (unions, Optional, containers by their origin, Any)."""
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arm) for arm in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is not None:
        return isinstance(value, origin)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def replace_checked(config: C, overrides: Mapping[str, object], kind: str = "") -> C:
    """`dataclasses.replace(config, **overrides)`, type-checked against the fields' annotations, then validated.

    Raises:
        ValueError: one line naming an unknown field or a value of the wrong type.
    """
    cls = type(config)
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in overrides.items():
        if key not in known:
            where = f" (in {kind})" if kind else ""
            raise ValueError(f"unknown {cls.__name__} field '{key}'{where}; valid fields: {', '.join(sorted(known))}")
        if not _matches(value, hints[key]):
            expected = getattr(hints[key], "__name__", str(hints[key]))
            raise ValueError(f"{cls.__name__}.{key} must be {expected}, got {value!r}")
    cfg = dataclasses.replace(copy.deepcopy(config), **overrides)  # type: ignore[type-var]
    if hasattr(cfg, "validate"):
        cfg.validate()
    return cfg


class PresetRegistry(Registry[C], Generic[C]):
    """Named configs of one family; `get(name, **overrides)` returns a validated copy with overrides applied."""

    def get(self, name: str, **overrides: object) -> C:
        """The preset `name` (a fresh copy) with `overrides` applied field by field (type-checked, validated)."""
        return replace_checked(super().get(name), overrides, kind=f"{self.kind} {name!r}")


@dataclass(frozen=True)
class ModelFamily:
    """Everything llmlab knows about one model family.

    Attributes:
        name: the family's name, written as `"family"` in `model_config.json`.
        config_class: its config dataclass (`from_dict`, `to_dict`, `validate`, `resolved`).
        model_class: its `nn.Module` (`__init__(config)`, `save_pretrained(dir, dtype=)`, `from_pretrained(dir)`).
        presets: its named configs.
        hf_architectures: HF `config.json` `architectures` entries it reads.
        hf_model_types: HF `model_type` values it reads (used when `architectures` is absent).
        load_hf: folder with a HF `config.json` -> model.
        save_hf: (model, directory, dtype, token_ids) -> writes a HF folder.
        gguf_architecture: GGUF `general.architecture`, or None when the family has no GGUF form.
        load_gguf: `GGUFFile` -> model.
        save_gguf: (model, path, dtype, extra_metadata, metadata_types) -> writes a GGUF file.
    """

    name: str
    config_class: type
    model_class: type
    presets: PresetRegistry
    hf_architectures: tuple[str, ...] = ()
    hf_model_types: tuple[str, ...] = ()
    load_hf: Callable[[Path], Any] | None = None
    save_hf: Callable[..., None] | None = None
    gguf_architecture: str | None = None
    load_gguf: Callable[[Any], Any] | None = None
    save_gguf: Callable[..., None] | None = None


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add `family` to the registry (a second family with the same name is an error)."""
    if family.name in FAMILIES and FAMILIES[family.name] != family:
        raise ValueError(f"model family '{family.name}' is registered twice")
    FAMILIES[family.name] = family
    return family


def supported() -> str:
    """One line listing the families and the HF/GGUF architectures llmlab reads."""
    hf = [a for f in FAMILIES.values() for a in f.hf_architectures]
    gguf = [f.gguf_architecture for f in FAMILIES.values() if f.gguf_architecture]
    return (
        f"supported: llmlab families {', '.join(FAMILIES)}; HF architectures {', '.join(hf)}; "
        f"GGUF architectures {', '.join(gguf)}"
    )


def get_family(name: str) -> ModelFamily:
    """The family registered as `name` (ValueError listing the known ones)."""
    if name not in FAMILIES:
        raise ValueError(f"llmlab has no model family {name!r}; {supported()}")
    return FAMILIES[name]


def family_of(model: object) -> ModelFamily:
    """The family whose model class `model` is (ValueError for anything else)."""
    for family in FAMILIES.values():
        if type(model) is family.model_class:
            return family
    for family in FAMILIES.values():
        if isinstance(model, family.model_class):
            return family
    raise ValueError(f"{type(model).__name__} is not an llmlab model; {supported()}")


def hf_family(hf_config: Mapping[str, Any]) -> ModelFamily:
    """The family for a HF `config.json` dict (ValueError naming the architecture when unsupported)."""
    archs = hf_config.get("architectures") or []
    for arch in archs:
        for family in FAMILIES.values():
            if arch in family.hf_architectures:
                return family
    model_type = hf_config.get("model_type")
    if not archs:
        for family in FAMILIES.values():
            if model_type in family.hf_model_types:
                return family
    name = ", ".join(archs) or model_type or "unknown"
    raise ValueError(f"llmlab does not implement the Hugging Face architecture '{name}'; {supported()}")


def gguf_family(architecture: str, source: object = "GGUF file") -> ModelFamily:
    """The family for a GGUF `general.architecture` (ValueError naming it when unsupported)."""
    for family in FAMILIES.values():
        if family.gguf_architecture == architecture:
            return family
    raise ValueError(f"{source}: llmlab does not implement the GGUF architecture '{architecture}'; {supported()}")
