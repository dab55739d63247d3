"""The run folder of a training verb (``pretrain``, ``finetune``, ``quickstart``): checked before anything is
written or loaded, created (or continued) in one place, never deleted beyond what this invocation made.

Layout: ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``tb/``, ``checkpoints/last`` (and ``best``),
``summary.json`` at the end, the marker file ``.llmlab-output`` (`llmlab.io.outputs`), and whatever the recipe
adds (fine-tuning: ``adapter/`` or ``model/`` and the tokenizer files; quickstart: ``data/``, ``report.md``).

Policy (`llmlab.io.check_output_dir`, docs/reliability.md):

- a new run takes a missing or empty folder; a non-empty folder that llmlab did not create is refused;
- ``overwrite=true`` replaces only a folder that holds the marker (an earlier llmlab output), and only once the
  whole config has been validated and the inputs loaded (`RunDir.create`);
- ``--resume`` needs a llmlab run folder with a checkpoint made from the same settings (`check_resume`);
- a run that fails before its first checkpoint removes only what this invocation created (`RunDir.guard`);
  a resumed run, or one with a checkpoint, is never removed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.config import save_config
from llmlab.io import (
    OUTPUT_MARKER,
    atomic_write_json,
    check_output_dir,
    is_llmlab_output,
    make_temp_dir,
    mark_output,
    replace_path,
)

RUN_ENTRIES = (OUTPUT_MARKER, "config.yaml", "metrics.jsonl", "tb", "checkpoints", "summary.json")


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"data": {"packing": True}} -> {"data.packing": True} (empty sections vanish)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume(saved: dict[str, Any], now: dict[str, Any], run_dir: Path) -> None:
    """Raise one line naming the first setting in which `now` differs from the checkpoint's ``run`` record.

    Raises:
        ValueError: e.g. ``cannot resume runs/x: method is 'full' in its checkpoint but 'lora' now; ...``.
    """
    a, b = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(now)))
    for key in sorted(set(a) | set(b), key=lambda k: (k == "data_sha256", k)):
        if a.get(key, "(not set)") == b.get(key, "(not set)"):
            continue
        if key == "data_sha256":
            what = "the training data changed (its tokenized examples differ from the checkpoint's)"
        else:
            what = f"{key} is {a.get(key, '(not set)')!r} in its checkpoint but {b.get(key, '(not set)')!r} now"
        raise ValueError(
            f"cannot resume {run_dir}: {what}; resume with the run's settings (see its config.yaml) "
            "or start a new run (another out_dir, or overwrite=true)"
        )


@dataclass
class RunDir:
    """A checked run folder (make one with `open_run`).

    Attributes:
        path: the folder (``out_dir``).
        verb: the llmlab verb that owns it (recorded in the marker).
        resume_state: the loaded ``trainer_state.pt`` when resuming, else None.
        extra_entries: further names inside `path` this recipe creates (removed with it on an early failure).
    """

    path: Path
    verb: str
    resume_state: dict[str, Any] | None = None
    extra_entries: tuple[str, ...] = ()
    _created: bool = field(default=False, repr=False)  # this invocation made the folder itself
    _started: bool = field(default=False, repr=False)

    @property
    def last(self) -> Path:
        """The checkpoint a run resumes from."""
        return self.path / "checkpoints" / "last"

    def create(self, config: Any | None = None) -> None:
        """Make the folder (replacing an earlier llmlab output when starting over) and write ``config.yaml``.

        Call on rank 0 only, after everything has been validated and loaded. Calling it again (a recipe that
        runs inside another's folder, like quickstart's pretraining) only writes the config.
        """
        if self.resume_state is None and not self._started:
            if self.path.exists() and any(self.path.iterdir()):  # an llmlab output: open_run allowed overwrite
                fresh = make_temp_dir(self.path, "new")
                mark_output(fresh, self.verb)
                replace_path(fresh, self.path)
                self._created = True
            elif not self.path.exists():
                self.path.mkdir(parents=True)
                self._created = True
            mark_output(self.path, self.verb)
        self._started = True
        if config is not None:
            save_config(config, self.path / "config.yaml")

    def has_checkpoint(self) -> bool:
        """Whether any checkpoint (or a save in progress) exists in the folder."""
        ckpts = self.path / "checkpoints"
        return ckpts.is_dir() and any(ckpts.iterdir())

    def discard(self) -> None:
        """Remove what this invocation created, unless the run is resumed or has a checkpoint."""
        if not self._started or self.resume_state is not None or self.has_checkpoint():
            return
        for name in (*RUN_ENTRIES, *self.extra_entries):
            entry = self.path / name
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty: anything else in it stays

    @contextlib.contextmanager
    def guard(self, enabled: bool = True) -> Iterator[None]:
        """On any exception (Ctrl-C included) `discard` what this run created, then re-raise."""
        try:
            yield
        except BaseException:
            if enabled:
                self.discard()
            raise

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """``summary.json``, atomically."""
        return atomic_write_json(self.path / "summary.json", summary)


def open_run(
    out_dir: str | Path,
    verb: str,
    *,
    resume: bool,
    overwrite: bool,
    max_iters: int,
    identity: dict[str, Any] | None = None,
    sources: Iterable[str | Path | None] = (),
) -> RunDir:
    """Check `out_dir` for a new run or a resume; nothing is written. With `resume`, loads the trainer state.

    Args:
        out_dir: the run folder.
        verb: the llmlab verb (``pretrain``, ``finetune``, ``quickstart``).
        resume: continue ``checkpoints/last``.
        overwrite: a new run may replace an earlier llmlab output at `out_dir`.
        max_iters: ``train.max_iters`` (a resumed run must not be finished already).
        identity: what the run is made from (JSON primitives); a resume must match the checkpoint's record.
        sources: the run's inputs (the folder may not be, contain or lie inside one).

    Raises:
        ValueError / FileNotFoundError: one line naming the folder and what to do instead.
    """
    from llmlab.train.checkpoint import find_checkpoint, load_trainer_state

    path = Path(out_dir)
    run = RunDir(path, verb)
    if is_llmlab_output(path) and (path / "checkpoints").is_dir():
        find_checkpoint(run.last)  # repair what a kill in the middle of a save left (rank 0 only), before any use
    if not resume:
        if is_llmlab_output(path) and run.has_checkpoint() and not overwrite:
            raise ValueError(
                f"{path} already exists; pass --resume to continue it, choose another out_dir, "
                "or pass overwrite=true to start over"
            )
        check_output_dir(path, overwrite=overwrite, sources=sources, flag="out_dir", overwrite_flag="overwrite=true")
        return run
    if path.is_dir() and any(path.iterdir()) and not is_llmlab_output(path):
        raise ValueError(f"--resume: {path} is not a llmlab run folder (it has no {OUTPUT_MARKER}); choose its out_dir")
    try:
        state = load_trainer_state(run.last)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"--resume: no checkpoint at {run.last}; run without --resume to start a new run "
            "(train.save_interval=N saves one every N steps)"
        ) from None
    if identity is not None and state.get("run"):
        check_resume({k: v for k, v in state["run"].items() if k != "data_sha256"}, identity, path)
    if int(state["iter"]) >= max_iters:
        raise ValueError(
            f"{path} already finished: its checkpoint is at step {int(state['iter'])} of train.max_iters="
            f"{max_iters}; raise train.max_iters to train further"
        )
    run.resume_state = state
    return run
