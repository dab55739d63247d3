"""Atomic training checkpoints and the RNG bookkeeping needed for an exact resume.

A checkpoint folder (``out_dir/checkpoints/last`` and optionally ``best``) holds:

- ``model.safetensors`` + ``model_config.json`` — written by ``GPT.save_pretrained``; loadable on its own for
  generation and evaluation (`load_checkpoint_model`),
- ``tokenizer.json`` — copied from the data folder when present,
- ``trainer_state.pt`` — optimizer, schedule, iteration, RNG states (python / numpy / torch / cuda, per rank),
  data-loader state, GradScaler, best val loss. Only tensors and primitives, so it loads with
  ``torch.load(weights_only=True)`` (no arbitrary pickle code runs when you open a checkpoint).

Atomicity: everything is written into a temp folder beside the target, then the old folder is renamed away,
the temp folder renamed into place, and the old one deleted. A crash mid-write leaves the previous checkpoint
intact (and at worst a ``.tmp-*`` folder that the next save removes).
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

TRAINER_STATE = "trainer_state.pt"


def rng_state() -> dict[str, Any]:
    """This process's RNG states as tensors/primitives (safe for ``weights_only`` loading)."""
    version, internal, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_name, torch.from_numpy(np_keys.astype(np.int64)), np_pos, np_has_gauss, np_gauss],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = state["numpy"]
    np.random.set_state((np_name, np_keys.numpy().astype(np.uint32), np_pos, np_has_gauss, np_gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _remove_stale_temps(parent: Path, name: str) -> None:
    for stale in parent.glob(f".tmp-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in parent.glob(f".old-{name}-*"):
        shutil.rmtree(stale, ignore_errors=True)


def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    save_model: Callable[[Path], None],
    trainer_state: dict[str, Any],
    tokenizer_file: str | os.PathLike | None = None,
) -> Path:
    """Write a checkpoint folder atomically.

    Args:
        ckpt_dir: the final folder, e.g. ``out_dir/checkpoints/last`` (replaced if it exists).
        save_model: writes the model files into the folder it is given (e.g. ``model.save_pretrained``).
        trainer_state: tensors and primitives only (so it reloads with ``weights_only=True``).
        tokenizer_file: a ``tokenizer.json`` to copy in, if any.

    Returns:
        The checkpoint folder.
    """
    final = Path(ckpt_dir)
    parent = final.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(parent, final.name)
    tmp = Path(tempfile.mkdtemp(dir=parent, prefix=f".tmp-{final.name}-"))
    try:
        save_model(tmp)
        if tokenizer_file is not None and Path(tokenizer_file).is_file():
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        torch.save(trainer_state, tmp / TRAINER_STATE)
        old = None
        if final.exists():
            old = parent / f".old-{final.name}-{os.getpid()}"
            os.replace(final, old)
        os.replace(tmp, final)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def load_trainer_state(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read ``trainer_state.pt`` with ``weights_only=True``.

    Raises:
        FileNotFoundError: the folder or its trainer state is missing.
    """
    path = Path(ckpt_dir) / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint to resume from: {path} does not exist (run without --resume to start a new run)"
        )
    return torch.load(path, map_location=map_location, weights_only=True)


def resolve_checkpoint_dir(path: str | os.PathLike) -> Path:
    """Accept a checkpoint folder or a run folder (then ``checkpoints/last`` inside it)."""
    p = Path(path)
    if (p / "model_config.json").is_file():
        return p
    if (p / "checkpoints" / "last" / "model_config.json").is_file():
        return p / "checkpoints" / "last"
    raise FileNotFoundError(
        f"no model checkpoint at {p} (expected model_config.json there or in {p / 'checkpoints' / 'last'}; "
        "train one with `llmlab pretrain`)"
    )


def load_checkpoint_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[Any, Any]:
    """Load a trained model for generation / evaluation.

    Args:
        path: a checkpoint folder (``.../checkpoints/last``) or a run folder.
        device: where to put the model.

    Returns:
        ``(model, config)``: the `GPT` in eval mode and its `GPTConfig`.
    """
    from llmlab.models.gpt import GPT

    model = GPT.from_pretrained(resolve_checkpoint_dir(path))
    model.to(device).eval()
    return model, model.config
