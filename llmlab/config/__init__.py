"""Typed configuration: dataclasses filled from YAML, then dotted command-line overrides.

Layer 1: no torch import here.
"""

from llmlab.config.core import config_to_dict, load_config, save_config
from llmlab.config.registry import Registry

__all__ = ["Registry", "config_to_dict", "load_config", "save_config"]
