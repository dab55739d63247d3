"""The value checks that config `validate()` methods share: each raises a one-line ValueError naming the key.

Layer 1: no torch import here.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any


def check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    """`value` must be one of `choices`: "unknown {key} 'x'; choose one of: a, b"."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"unknown {key} {value!r}; choose one of: {', '.join(choices)}")


def check_finite(key: str, value: float, *, positive: bool = False) -> None:
    """`value` must be a finite number >= 0 (> 0 with `positive`)."""
    ok = math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{key} must be a finite number {'> 0' if positive else '>= 0'}, got {value}")


def check_minimum(section: str, config: object, names: Iterable[str], minimum: int, requirement: str = "") -> None:
    """Each field `names` of `config` must be >= `minimum`: "{section}.{name} {requirement}, got {value}".

    `requirement` defaults to "must be >= {minimum}" (e.g. "must be a positive integer" for model sizes).
    """
    for name in names:
        value = getattr(config, name)
        if value < minimum:
            raise ValueError(f"{section}.{name} {requirement or f'must be >= {minimum}'}, got {value}")
