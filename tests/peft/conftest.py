"""Fixtures for the PEFT tests (helpers live in peft_helpers.py)."""

from __future__ import annotations

import pytest
import torch
from peft_helpers import FAMILIES, VOCAB


@pytest.fixture(params=list(FAMILIES))
def make_model(request: pytest.FixtureRequest):
    """A constructor of one tiny model family (parametrised over all three)."""
    return FAMILIES[request.param]


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed (x, y) batch of shape (2, 12), y = x shifted by one."""
    g = torch.Generator().manual_seed(123)
    data = torch.randint(0, VOCAB, (2, 13), generator=g)
    return data[:, :-1], data[:, 1:]
