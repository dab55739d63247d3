"""Load a dataclass config from YAML + dotted overrides (`train.lr=3e-4`), with clear errors.

OmegaConf does the merging and type checking; this module turns its exceptions into one-line
`ValueError`s that name the bad key and the fix. Interpolations that read the environment (``${oc.env:VAR}``)
are refused unless the user opts in (see `llmlab.config.interpolation`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from llmlab.config.interpolation import check_interpolations, escape_interpolations
from llmlab.io.files import atomic_write_text

T = TypeVar("T")


def _valid_keys(cls: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        ftype = f.type if isinstance(f.type, type) else None
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if dataclasses.is_dataclass(default):
            keys.extend(_valid_keys(type(default), name + "."))
        elif ftype is not None and dataclasses.is_dataclass(ftype):
            keys.extend(_valid_keys(ftype, name + "."))
        else:
            keys.append(name)
    return keys


def _explain(exc: OmegaConfBaseException, cls: type, source: str) -> ValueError:
    key = getattr(exc, "full_key", None) or ""
    if isinstance(exc, (ConfigAttributeError, ConfigKeyError)):
        close = [
            k for k in _valid_keys(cls) if k.split(".")[-1] == key.split(".")[-1] or k.startswith(key.split(".")[0])
        ]
        hint = f"; valid keys near it: {', '.join(close[:8])}" if close else ""
        return ValueError(f"unknown config key '{key}' in {source}{hint}")
    if isinstance(exc, ValidationError):
        return ValueError(f"bad value for config key '{key}' in {source}: {exc.msg.splitlines()[0]}")
    return ValueError(f"invalid config in {source}: {str(exc).splitlines()[0]}")


def peek_key(path: str | os.PathLike | None, overrides: list[str], key: str) -> Any:
    """The top-level `key` before any config is loaded (to choose which config class loads): the text of the last
    ``key=value`` override (stripped; empty = None), else the YAML file's value, else None. A file that cannot be
    read gives None here and is reported by `load_config`."""
    for item in reversed(overrides):
        name, sep, value = item.partition("=")
        if sep and name.strip() == key:
            return value.strip() or None
    if path is None or not Path(path).is_file():
        return None
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    return raw.get(key) if isinstance(raw, dict) else None


def load_config(
    cls: type[T],
    path: str | os.PathLike | None = None,
    overrides: list[str] | None = None,
    *,
    allow_env: bool | None = None,
) -> T:
    """Build a `cls` dataclass from defaults, then the YAML file at `path`, then `key=value` overrides.

    References between keys (``${train.lr}``) are resolved. Resolvers that read the environment or may run code
    (``${oc.env:VAR}``, any third-party resolver) are refused unless `allow_env` is True, or it is None (the
    default) and the environment sets ``LLMLAB_ALLOW_ENV_IN_CONFIG=1``.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ValueError: an unknown key, a value of the wrong type, an override without `=`, or an environment
            interpolation without the opt-in.
    """
    cfg = OmegaConf.structured(cls)
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise FileNotFoundError(f"config file not found: {p} (pass an existing YAML file to --config)")
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config file {p} must hold a mapping of keys to values, got {type(data).__name__}")
        check_interpolations(data, str(p), allow_env)
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.create(data))
        except OmegaConfBaseException as e:
            raise _explain(e, cls, str(p)) from None
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override '{item}' must look like key=value (e.g. train.lr=3e-4)")
        key, _, value = item.partition("=")
        check_interpolations({key.strip(): value}, f"override '{item}'", allow_env)
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as e:
            raise _explain(e, cls, f"override '{item}'") from None
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        raise _explain(e, cls, "config") from None
    post = getattr(obj, "validate", None)
    if callable(post):
        post()
    return obj  # type: ignore[return-value]


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A plain nested dict of a dataclass config (for YAML/JSON output)."""
    return dataclasses.asdict(cfg)


def config_to_yaml(cfg: Any) -> str:
    """The config as YAML text that `load_config` reads back to the same values (literal ``${`` escaped)."""
    return yaml.safe_dump(escape_interpolations(config_to_dict(cfg)), sort_keys=False, allow_unicode=True)


def save_config(cfg: Any, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically (`llmlab.io.atomic_write_text`).

    A string value that holds ``${`` literally is written escaped (``\\${``), so `load_config` reads back the
    same string instead of resolving it — a saved config never turns into an interpolation on ``--resume``.
    """
    atomic_write_text(path, config_to_yaml(cfg))
