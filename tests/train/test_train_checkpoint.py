"""Checkpoints: atomic folder replacement, weights_only trainer state, RNG round trip."""

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from llmlab.train.checkpoint import load_trainer_state, rng_state, save_checkpoint, set_rng_state


def writer(text: str, fail: bool = False):
    def save_model(directory: Path) -> None:
        (directory / "model.safetensors").write_text(text)
        if fail:
            raise RuntimeError("disk full")

    return save_model


def test_failed_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    last = tmp_path / "checkpoints" / "last"
    save_checkpoint(last, writer("v1"), {"iter": 1})
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint(last, writer("v2-partial", fail=True), {"iter": 2})
    assert (last / "model.safetensors").read_text() == "v1"
    assert load_trainer_state(last)["iter"] == 1
    with pytest.raises(Exception):  # noqa: B017 - torch.save cannot pickle a lambda: fails after the model
        save_checkpoint(last, writer("v3"), {"iter": 3, "bad": lambda: 0})
    assert (last / "model.safetensors").read_text() == "v1"
    assert sorted(p.name for p in last.parent.iterdir()) == ["last"]  # no temp folders left behind


def test_successful_save_replaces_and_cleans_up(tmp_path: Path) -> None:
    last = tmp_path / "last"
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    save_checkpoint(last, writer("v1"), {"iter": 1})
    (tmp_path / ".tmp-last-crashed").mkdir()  # left by a process killed mid-save (older naming)
    (tmp_path / ".last.tmp-crashed").mkdir()  # left by a process killed mid-save
    save_checkpoint(last, writer("v2"), {"iter": 2, "t": torch.arange(3)}, tokenizer_file=tok)
    assert (last / "model.safetensors").read_text() == "v2"
    assert sorted(p.name for p in last.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "tokenizer.json",
        "trainer_state.pt",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last", "tokenizer.json"]
    state = load_trainer_state(last)
    assert state["iter"] == 2 and torch.equal(state["t"], torch.arange(3))


def test_missing_trainer_state_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from.*without --resume"):
        load_trainer_state(tmp_path)


def test_rng_state_round_trip_through_weights_only_load(tmp_path: Path) -> None:
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    torch.save({"rng": rng_state()}, tmp_path / "s.pt")
    first = (random.random(), np.random.rand(), torch.rand(2), torch.nn.functional.dropout(torch.ones(8), 0.5))
    state = torch.load(tmp_path / "s.pt", weights_only=True)["rng"]
    set_rng_state(state)
    second = (random.random(), np.random.rand(), torch.rand(2), torch.nn.functional.dropout(torch.ones(8), 0.5))
    assert first[0] == second[0] and first[1] == second[1]
    assert torch.equal(first[2], second[2]) and torch.equal(first[3], second[3])
