"""The model-family registry and the shared preset registry.

A family (`gpt`, `llama`; later `bert`, `t5`, `clip`) is one `ModelFamily` record: its config and model
classes, how Hugging Face and GGUF name it, its readers/writers and its presets. Each family registers itself
from its own package (`llmlab/models/<family>/__init__.py`):

    register_family(ModelFamily.of(
        Llama,  # a DecoderLM subclass: it names its family, config class and presets
        hf=HFFormat(("LlamaForCausalLM",), ("llama",), load_hf_llama, save_hf_llama),
        gguf=GGUFFormat("llama", load_gguf_llama, save_gguf_llama),
    ))

Format-level code (`llmlab.models.formats.dispatch`) looks families up here and never names one.

Adding a family `foo`: a config dataclass (`validate()`, `resolved()`, the aliases `n_layer`, `block_size`,
`kv_heads`, `tie_embeddings`), its `PRESETS = PresetRegistry("foo preset")`, a model subclassing
`llmlab.models.base.DecoderLM` (sets `family_name`, `config_class`, `presets`, `module_paths`; writes `_embed`
and `_attention_masks`; the base provides `forward` and the accessors `embed_tokens`, `layers`, `final_norm`),
optional `hf.py`/`gguf.py` converters (tensor names via `llmlab.models.formats.gguf_names.TensorNames`, folders
via `llmlab.models.formats.hf`), and the call above in
`llmlab/models/foo/__init__.py`, imported by `llmlab/models/__init__.py`.
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


def config_from_dict(cls: type[C], d: Mapping[str, Any], family: str) -> C:
    """A validated `cls` from a dict such as `model_config.json` (type-checked like a preset override).

    A `"family"` key, when present, must name `family`.

    Raises:
        ValueError: the dict is for another family, has an unknown key or a value of the wrong type.
    """
    fields = dict(d)
    named = fields.pop("family", family)
    if named != family:
        raise ValueError(f"this config is for the {named!r} model family, not {family!r}; load it with that family")
    return replace_checked(cls(), fields)


class PresetRegistry(Registry[C], Generic[C]):
    """Named configs of one family; `get(name, **overrides)` returns a validated copy with overrides applied."""

    def get(self, name: str, **overrides: object) -> C:
        """The preset `name` (a fresh copy) with `overrides` applied field by field (type-checked, validated)."""
        return replace_checked(super().get(name), overrides, kind=f"{self.kind} {name!r}")


@dataclass(frozen=True)
class HFFormat:
    """How a family reads and writes Hugging Face folders.

    Attributes:
        architectures: `config.json` `architectures` entries it reads (the first is the one it writes).
        model_types: `model_type` values it reads (used when `architectures` is absent).
        load: folder -> model.
        save: (model, directory, dtype, token_ids) -> None.
    """

    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    load: Callable[[Path], Any]
    save: Callable[..., None]


@dataclass(frozen=True)
class GGUFFormat:
    """How a family reads and writes llama.cpp GGUF files.

    Attributes:
        architecture: `general.architecture`.
        load: `GGUFFile` -> model.
        save: (model, path, dtype, extra_metadata, metadata_types) -> None.
    """

    architecture: str
    load: Callable[[Any], Any]
    save: Callable[..., None]


@dataclass(frozen=True)
class ModelFamily:
    """Everything llmlab knows about one model family.

    Attributes:
        name: the family's name, written as `"family"` in `model_config.json`.
        config_class: its config dataclass (`from_dict`, `to_dict`, `validate`, `resolved`).
        model_class: its `nn.Module` (`__init__(config)`, `save_pretrained(dir, dtype=)`, `from_pretrained(dir)`).
        presets: its named configs.
        hf: its Hugging Face form, or None.
        gguf: its GGUF form, or None.
    """

    name: str
    config_class: type
    model_class: type
    presets: PresetRegistry
    hf: HFFormat | None = None
    gguf: GGUFFormat | None = None

    @classmethod
    def of(cls, model_class: Any, hf: HFFormat | None = None, gguf: GGUFFormat | None = None) -> ModelFamily:
        """The family of a `DecoderLM` subclass, which names its family, config class and presets itself."""
        return cls(model_class.family_name, model_class.config_class, model_class, model_class.presets, hf, gguf)


FAMILIES: dict[str, ModelFamily] = {}


def register_family(family: ModelFamily) -> ModelFamily:
    """Add `family` to the registry (a second family with the same name is an error)."""
    if family.name in FAMILIES and FAMILIES[family.name] != family:
        raise ValueError(f"model family '{family.name}' is registered twice")
    FAMILIES[family.name] = family
    return family


def supported() -> str:
    """One line listing the families and the HF/GGUF architectures llmlab reads."""
    hf = [a for f in FAMILIES.values() if f.hf for a in f.hf.architectures]
    gguf = [f.gguf.architecture for f in FAMILIES.values() if f.gguf]
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
    with_hf = [f for f in FAMILIES.values() if f.hf is not None]
    for arch in archs:
        for family in with_hf:
            if arch in family.hf.architectures:
                return family
    model_type = hf_config.get("model_type")
    if not archs:
        for family in with_hf:
            if model_type in family.hf.model_types:
                return family
    name = ", ".join(archs) or model_type or "unknown"
    raise ValueError(f"llmlab does not implement the Hugging Face architecture '{name}'; {supported()}")


def gguf_family(architecture: str, source: object = "GGUF file") -> ModelFamily:
    """The family for a GGUF `general.architecture` (ValueError naming it when unsupported)."""
    for family in FAMILIES.values():
        if family.gguf is not None and family.gguf.architecture == architecture:
            return family
    raise ValueError(f"{source}: llmlab does not implement the GGUF architecture '{architecture}'; {supported()}")
