"""Typed configuration: dataclasses filled from YAML, then dotted command-line overrides.

Environment interpolation (``${oc.env:VAR}``) is refused unless the user sets ``LLMLAB_ALLOW_ENV_IN_CONFIG=1``
or passes ``load_config(..., allow_env=True)``. Layer 1: no torch import here.
"""

from llmlab.config.core import config_to_dict, config_to_yaml, load_config, peek_key, save_config
from llmlab.config.interpolation import ALLOW_ENV_VARIABLE
from llmlab.config.registry import Registry

__all__ = [
    "ALLOW_ENV_VARIABLE",
    "Registry",
    "config_to_dict",
    "config_to_yaml",
    "load_config",
    "peek_key",
    "save_config",
]
