"""Fixtures of the human-evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from human_helpers import OUTPUTS, PROMPTS


@pytest.fixture
def study_path(tmp_path: Path) -> Path:
    """A fresh two-model (alpha, beta), three-prompt study."""
    from llmlab.eval.human.store import create_study

    rows = {name: list(zip(PROMPTS, texts, strict=True)) for name, texts in OUTPUTS.items()}
    return create_study(tmp_path / "study.sqlite", rows, seed=0)
