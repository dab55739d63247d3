"""Crash-proof training checkpoints and the RNG bookkeeping needed for an exact resume.

A checkpoint folder (``out_dir/checkpoints/last`` and optionally ``best``) holds:

- ``model.safetensors`` + ``model_config.json`` (or an adapter's files) — written by the trainer's `save_model`,
- ``tokenizer.json`` — copied from the data folder when present,
- ``trainer_state.pt`` — optimizer, schedule, iteration, RNG states (python / numpy / torch / cuda, per rank),
  data-loader state, GradScaler, best val loss. Only tensors and primitives, so it loads with
  ``torch.load(weights_only=True)`` (no arbitrary pickle code runs when you open a checkpoint),
- ``checkpoint.json`` — the manifest, written last: every other file's name and size plus the iteration. A folder
  is *complete* exactly when its manifest is present and every file it lists has the listed size.

Guarantees (see docs/reliability.md):

1. `save_checkpoint` writes the new checkpoint completely (files fsynced, manifest last) into a temp folder
   ``.<name>.tmp-*`` beside the target, then puts it in place with one atomic ``renameat2(RENAME_EXCHANGE)``
   (`llmlab.io.replace_path`); only after that is the previous checkpoint deleted. So ``last`` names a complete
   checkpoint at every instant. Where the OS cannot exchange two names, the old folder is renamed aside to
   ``.<name>.old-*`` first: for that short window ``last`` is missing but both copies are complete on disk.
2. `find_checkpoint` (used by every resume path) repairs whatever a kill left behind: it promotes the newest
   complete copy among ``last`` and its hidden leftovers to ``last``, deletes the rest (half-written temp folders,
   old copies) and reports what it did in one line. The same applies to ``best``.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmlab.io import atomic_write_json, make_temp_dir, replace_path

TRAINER_STATE = "trainer_state.pt"
MANIFEST = "checkpoint.json"
MANIFEST_FORMAT = 1
# Hidden leftovers of an interrupted save, by the name of the checkpoint they belong to: temp folders of
# `make_temp_dir` (".last.tmp-x1y2"), old copies of `replace_path` (".last.old-123") and, from older llmlab
# versions, ".tmp-last-x1y2" / ".old-last-123".
_LEFTOVER = re.compile(r"^\.(?:(?P<a>.+)\.(?:tmp|old)-[^.]+|(?:tmp|old)-(?P<b>.+)-[^-]+)$")


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


# ---------------------------------------------------------------------------------------------------- manifest
def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> dict[str, int]:
    """fsync every file under `folder` (and the folders); returns ``{relative path: size}``."""
    files: dict[str, int] = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            files[path.relative_to(folder).as_posix()] = path.stat().st_size
    for sub in sorted({p.parent for p in folder.rglob("*")} | {folder}):
        _fsync_dir(sub)
    return files


def read_manifest(ckpt_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The folder's manifest, or None when it has none or a cut-short one.

    Raises:
        OSError: reading failed for another reason than a missing file (a read error must not make a good
            checkpoint look incomplete, since recovery deletes incomplete copies).
    """
    try:
        manifest = json.loads((Path(ckpt_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def is_complete_checkpoint(ckpt_dir: str | os.PathLike) -> bool:
    """True when `ckpt_dir` holds a whole checkpoint: its manifest lists files that all exist with their sizes.

    A folder without a manifest but with a trainer state counts as complete when it is visible or an older llmlab's
    ``.old-<name>-<pid>`` copy: older versions wrote no manifest and only ever renamed finished folders.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return False
    manifest = read_manifest(folder)
    if manifest is None:  # a checkpoint of an older llmlab: visible, or set aside whole by its old save
        trusted = not folder.name.startswith(".") or folder.name.startswith(".old-")
        return trusted and not (folder / MANIFEST).exists() and (folder / TRAINER_STATE).is_file()
    for name, size in manifest["files"].items():
        try:
            if (folder / name).stat().st_size != size:
                return False
        except (FileNotFoundError, NotADirectoryError):
            return False
    return True


# ---------------------------------------------------------------------------------------------------- save
def save_checkpoint(
    ckpt_dir: str | os.PathLike,
    save_model: Callable[[Path], None],
    trainer_state: dict[str, Any],
    tokenizer_file: str | os.PathLike | None = None,
) -> Path:
    """Write a checkpoint folder so that a complete one is in place at every instant (see the module docs).

    Args:
        ckpt_dir: the final folder, e.g. ``out_dir/checkpoints/last`` (replaced if it exists).
        save_model: writes the model files into the folder it is given (e.g. ``model.save_pretrained``).
        trainer_state: tensors and primitives only (so it reloads with ``weights_only=True``).
        tokenizer_file: a ``tokenizer.json`` to copy in, if any.

    Returns:
        The checkpoint folder.
    """
    final = Path(ckpt_dir)
    tmp = make_temp_dir(final, "tmp")
    try:
        save_model(tmp)
        if tokenizer_file is not None and Path(tokenizer_file).is_file():
            shutil.copyfile(tokenizer_file, tmp / "tokenizer.json")
        torch.save(trainer_state, tmp / TRAINER_STATE)
        files = _fsync_tree(tmp)  # the data is on disk before the manifest says it is
        manifest = {"format": MANIFEST_FORMAT, "iter": int(trainer_state.get("iter", 0)), "files": files}
        atomic_write_json(tmp / MANIFEST, manifest)
        replace_path(tmp, final)  # one atomic exchange; the old checkpoint is deleted only after it
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _remove_leftovers(final)
    return final


def _remove_leftovers(final: Path) -> None:
    """Delete hidden copies that belong to `final` (an interrupted earlier save), once `final` is complete."""
    for path in _leftovers(final):
        shutil.rmtree(path, ignore_errors=True)


def _leftovers(final: Path) -> list[Path]:
    if not final.parent.is_dir():
        return []
    found = []
    for path in final.parent.iterdir():
        match = _LEFTOVER.match(path.name)
        if match and (match.group("a") or match.group("b")) == final.name:
            found.append(path)
    return sorted(found)


# ---------------------------------------------------------------------------------------------------- recovery
def _iteration(folder: Path) -> int:
    manifest = read_manifest(folder)
    if manifest is not None:
        return int(manifest.get("iter", -1))
    try:
        return int(torch.load(folder / TRAINER_STATE, map_location="cpu", weights_only=True).get("iter", -1))
    except Exception:  # noqa: BLE001 - an unreadable legacy state ranks last
        return -1


def recover_checkpoint(ckpt_dir: str | os.PathLike, repair: bool = True) -> tuple[Path | None, str | None]:
    """Find the newest complete copy of one checkpoint (``last`` or a hidden leftover) and put it in place.

    Args:
        ckpt_dir: the checkpoint's folder, e.g. ``run/checkpoints/last`` (it may be missing).
        repair: move the chosen copy to `ckpt_dir` and delete the other leftovers (rank 0 only; other ranks
            pass False and just read).

    Returns:
        ``(folder, note)``: the complete checkpoint (`ckpt_dir` after a repair; None when there is none) and one
        line saying what was repaired (None when there was nothing to do). Leftovers are deleted only once a
        complete checkpoint is in place; with none, every folder stays as it is.
    """
    final = Path(ckpt_dir)
    leftovers = _leftovers(final)
    if not leftovers:
        return (final if is_complete_checkpoint(final) else None), None
    candidates = [p for p in [final, *leftovers] if is_complete_checkpoint(p)]
    # newest iteration wins; on a tie the visible folder, then the copy saved last (a temp folder)
    best = max(candidates, key=lambda p: (_iteration(p), p == final, ".tmp-" in p.name), default=None)
    if not repair:
        return best, None
    if best is None:  # nothing loadable: leave every folder as it is
        return None, None
    done = []
    if best != final:
        replace_path(best, final)  # an incomplete `final` is exchanged out and deleted
        done.append(f"restored {best.name} (iteration {_iteration(final)}) as {final.name}")
    if not is_complete_checkpoint(final):  # checked again before anything is deleted
        raise OSError(f"checkpoint {final} changed during its recovery; is another process writing it?")
    removed = [p.name for p in _leftovers(final)]
    _remove_leftovers(final)
    if removed:
        done.append(f"removed {len(removed)} leftover folder{'s' if len(removed) > 1 else ''} of an interrupted save")
    note = f"checkpoint {final}: " + "; ".join(done) if done else None
    return final, note


def _checkpoint_target(path: Path, name: str) -> Path:
    """`path` as a checkpoint folder: ``path/name`` for a ``checkpoints`` folder, ``path/checkpoints/name`` for a
    run folder, else `path` itself."""
    if path.name == "checkpoints":
        return path / name
    if path.name != name and (path / "checkpoints").is_dir():
        return path / "checkpoints" / name
    return path


def find_checkpoint(
    path: str | os.PathLike,
    name: str = "last",
    repair: bool | None = None,
    report: Callable[[str], None] | None = None,
) -> Path | None:
    """Locate (and repair) a run's checkpoint: the entry point of every resume path.

    Args:
        path: a run folder, its ``checkpoints`` folder, or a checkpoint folder itself.
        name: which checkpoint of a run folder (``last`` or ``best``).
        repair: fix leftovers of an interrupted save (see `recover_checkpoint`); False only reads. Default: only
            in a single process or on rank 0 of ``torchrun`` (``RANK``), so ranks do not race on the renames.
        report: where to say what was repaired (default: one line on stderr).

    Returns:
        The complete checkpoint folder, or None when there is none. Inside a run's ``checkpoints`` folder the
        sibling checkpoints (``best`` next to ``last``) are repaired as well.
    """
    target = _checkpoint_target(Path(path), name)
    if repair is None:
        repair = os.environ.get("RANK", "0") == "0"
    say = report or (lambda line: print(line, file=sys.stderr, flush=True))
    siblings = {target.name}
    if target.parent.name == "checkpoints" and target.parent.is_dir():  # a run's other checkpoints too
        for entry in target.parent.iterdir():
            match = _LEFTOVER.match(entry.name)
            if match:
                siblings.add(match.group("a") or match.group("b"))
            elif entry.is_dir() and not entry.name.startswith("."):
                siblings.add(entry.name)
    found = None
    for sibling in sorted(siblings):
        folder, note = recover_checkpoint(target.parent / sibling, repair=repair)
        if note:
            say(note)
        if sibling == target.name:
            found = folder
    return found


def load_trainer_state(ckpt_dir: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read ``trainer_state.pt`` of a complete checkpoint with ``weights_only=True``.

    Raises:
        FileNotFoundError: the folder, its trainer state or part of its files are missing.
    """
    folder = Path(ckpt_dir)
    path = folder / TRAINER_STATE
    if not path.is_file():
        raise FileNotFoundError(
            f"no checkpoint to resume from: {path} does not exist (run without --resume to start a new run)"
        )
    if not is_complete_checkpoint(folder):
        raise FileNotFoundError(
            f"checkpoint {folder} is incomplete (files missing or cut short, see its {MANIFEST}); "
            "resume from another checkpoint or run without --resume to start a new run"
        )
    return torch.load(path, map_location=map_location, weights_only=True)
