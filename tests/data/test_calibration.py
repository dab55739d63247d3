"""Calibration windows (llmlab/data/calibration.py): shapes, seeded offsets in the text, JSONL fields, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmlab.data.calibration import calibration_windows
from llmlab.data.sources import resolve_sources


class CharTokenizer:
    """One id per character (its code point), enough to check which text a window came from."""

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def test_windows_are_seeded_slices_of_the_text(tmp_path: Path) -> None:
    text = "".join(chr(97 + i % 26) for i in range(5000))
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    files = resolve_sources([str(tmp_path / "a.txt")])
    windows = calibration_windows(files, CharTokenizer(), samples=6, tokens=40, seed=3)
    assert len(windows) == 6 and all(w.shape == (1, 40) and w.dtype == torch.long for w in windows)
    for w in windows:
        assert "".join(chr(i) for i in w[0].tolist()) in text
    again = calibration_windows(files, CharTokenizer(), samples=6, tokens=40, seed=3)
    other = calibration_windows(files, CharTokenizer(), samples=6, tokens=40, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(windows, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(windows, other, strict=True))


def test_jsonl_text_fields_are_read(tmp_path: Path) -> None:
    rows = [{"text": "x" * 300, "id": 1}, {"text": "y" * 300, "id": 2}]
    (tmp_path / "c.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    windows = calibration_windows(resolve_sources([str(tmp_path / "c.jsonl")]), CharTokenizer(), 4, 20)
    assert {chr(i) for w in windows for i in w[0].tolist()} <= {"x", "y", "\n"}


def test_too_short_a_text_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("tiny", encoding="utf-8")
    with pytest.raises(ValueError, match="fewer than one window of 64"):
        calibration_windows(resolve_sources([str(tmp_path / "short.txt")]), CharTokenizer(), 2, 64)
