"""Which OmegaConf interpolations a config may use: key references always, environment reads only on opt-in.

OmegaConf resolves ``${oc.env:VAR}`` in YAML values and in ``key=value`` overrides, and llmlab stores the
resolved config in the run's ``config.yaml``; a config from someone else could copy a secret (an API token in
the environment) into run files that get shared. So llmlab allows, by default:

- references between config keys: ``${train.lr}``, ``${.sibling}``;
- the built-in resolvers that only rearrange config values: ``oc.select``, ``oc.decode``, ``oc.create``,
  ``oc.deprecated``, ``oc.dict.keys``, ``oc.dict.values``.

Every other resolver — ``oc.env`` and any resolver some library registered (which may run arbitrary code) — is
refused with one line naming the key, unless the user opts in with ``LLMLAB_ALLOW_ENV_IN_CONFIG=1`` in the
environment or ``load_config(..., allow_env=True)``. Layer 1: no torch import.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

from omegaconf import grammar_parser
from omegaconf.errors import GrammarParseError
from omegaconf.grammar.gen.OmegaConfGrammarParser import OmegaConfGrammarParser

ALLOW_ENV_VARIABLE = "LLMLAB_ALLOW_ENV_IN_CONFIG"
SAFE_RESOLVERS = frozenset({"oc.select", "oc.decode", "oc.create", "oc.deprecated", "oc.dict.keys", "oc.dict.values"})


def env_allowed(allow_env: bool | None) -> bool:
    """`allow_env` when given, else whether ``LLMLAB_ALLOW_ENV_IN_CONFIG`` is set to a true value (1/true/yes)."""
    if allow_env is not None:
        return allow_env
    return os.environ.get(ALLOW_ENV_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def _resolver_names(tree: Any) -> Iterator[str]:
    """Every resolver name called anywhere in a parsed OmegaConf value (nested calls included)."""
    if isinstance(tree, OmegaConfGrammarParser.InterpolationResolverContext):
        yield tree.resolverName().getText()
    for child in tree.getChildren() if hasattr(tree, "getChildren") else ():
        yield from _resolver_names(child)


def unsafe_resolvers(value: str) -> list[str]:
    """The resolvers outside `SAFE_RESOLVERS` that the string `value` calls when OmegaConf resolves it."""
    if "${" not in value:
        return []
    try:
        tree = grammar_parser.parse(value)
    except GrammarParseError:
        return []  # not an interpolation OmegaConf would resolve; it reports the syntax error itself
    return [name for name in _resolver_names(tree) if name not in SAFE_RESOLVERS]


def _strings(data: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, string) for every string key and value in a nested dict/list, keys included."""
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            if isinstance(key, str):
                yield name, key
            yield from _strings(value, name)
    elif isinstance(data, (list, tuple)):
        for index, value in enumerate(data):
            yield from _strings(value, f"{prefix}[{index}]")
    elif isinstance(data, str):
        yield prefix, data


def check_interpolations(data: Any, source: str, allow_env: bool | None = None) -> None:
    """Refuse `data` (a YAML mapping, or ``{key: value}`` of one override) if it calls an unsafe resolver.

    Raises:
        ValueError: one line naming the key, the resolver, `source` and the opt-in.
    """
    if env_allowed(allow_env):
        return
    for key, text in _strings(data):
        names = unsafe_resolvers(text)
        if names:
            what = "reads the environment" if names[0] == "oc.env" else "is not one of llmlab's safe resolvers"
            raise ValueError(
                f"config key '{key}' in {source} uses ${{{names[0]}:...}}, which {what}; llmlab resolves it only when "
                f"you opt in with {ALLOW_ENV_VARIABLE}=1 (the resolved value is then saved in the run's config.yaml)"
            )


_INTERPOLATION_START = re.compile(r"(\\*)\$\{")


def escape_interpolations(data: Any) -> Any:
    """A copy of nested dicts/lists/strings in which every literal ``${`` is escaped for OmegaConf.

    OmegaConf reads ``\\${`` as the two characters ``${`` and ``\\\\${`` as a backslash before an
    interpolation, so backslashes in front of ``${`` are doubled and one more is added:
    ``OmegaConf.create({"v": escape_interpolations(s)}).v == s`` for every string ``s``.
    """
    if isinstance(data, dict):
        return {key: escape_interpolations(value) for key, value in data.items()}
    if isinstance(data, list):
        return [escape_interpolations(value) for value in data]
    if isinstance(data, tuple):
        return tuple(escape_interpolations(value) for value in data)
    if isinstance(data, str) and "${" in data:
        return _INTERPOLATION_START.sub(lambda m: m.group(1) * 2 + "\\${", data)
    return data
