"""Crash safety of checkpoints (issue 9): a fault or a SIGKILL at every step of a save never loses the run.

(a) every file-system operation of `save_checkpoint` raises, before or after it takes effect, once each;
(b) a forked process SIGKILLs itself at each of those steps;
(c) a real `llmlab pretrain` subprocess is `kill -9`ed at random moments and resumed, and the final metrics,
    TensorBoard scalars and weights equal an uninterrupted run exactly.
After (a) and (b) the previous (or the new) checkpoint must load, and the next save must succeed and leave no
leftovers.
"""

from __future__ import annotations

import builtins
import dataclasses
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

import llmlab.io.files as io_files
import llmlab.train.checkpoint as ckpt
from llmlab.train.checkpoint import find_checkpoint, is_complete_checkpoint, load_trainer_state, save_checkpoint

# Every call that writes, renames, syncs or deletes during a save (module, attribute).
FAULT_POINTS: list[tuple[object, str]] = [
    (builtins, "open"),
    (io, "open"),
    (os, "open"),
    (os, "mkdir"),
    (os, "chmod"),
    (os, "fsync"),
    (os, "replace"),
    (os, "rename"),
    (os, "unlink"),
    (os, "rmdir"),
    (shutil, "copyfile"),
    (shutil, "rmtree"),
    (torch, "save"),
    (ckpt, "replace_path"),
    (ckpt, "atomic_write_json"),
    (io_files, "_exchange"),
]


class InjectedFault(OSError):
    """The error a patched operation raises."""


@contextmanager
def faults(action: Callable[[str], None], at: int, when: str, log: list[str]) -> Iterator[None]:
    """Patch every fault point: call number `at` (0-based, over all points) runs `action` before/after the real
    call. `log` receives the names of all calls (to count the steps of a save)."""
    saved = []

    def wrap(name: str, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            k = len(log)
            log.append(name)
            if k == at and when == "before":
                action(name)
            try:
                return fn(*args, **kwargs)
            finally:  # also after a call that failed on its own (mkdir of an existing folder)
                if k == at and when == "after":
                    action(name)

        return wrapper

    for module, attr in FAULT_POINTS:
        original = getattr(module, attr)
        if original is None:  # no renameat2 on this system
            continue
        saved.append((module, attr, original))
        setattr(module, attr, wrap(f"{getattr(module, '__name__', module)}.{attr}", original))
    try:
        yield
    finally:
        for module, attr, original in reversed(saved):
            setattr(module, attr, original)


def writer(version: int) -> Callable[[Path], None]:
    def save_model(directory: Path) -> None:
        (directory / "model.safetensors").write_text(f"weights v{version}" + "." * 100 * version)
        (directory / "model_config.json").write_text(json.dumps({"v": version}))

    return save_model


def save(last: Path, version: int, tokenizer: Path) -> Path:
    return save_checkpoint(last, writer(version), {"iter": version, "w": torch.full((4,), version)}, tokenizer)


def assert_loads(last: Path, allowed: set[int]) -> int:
    """Recover, then check the checkpoint is whole and consistent; returns its version."""
    notes: list[str] = []
    found = find_checkpoint(last, report=notes.append)
    assert found == last and is_complete_checkpoint(last), notes
    state = load_trainer_state(last)
    version = int(state["iter"])
    assert version in allowed
    assert torch.equal(state["w"], torch.full((4,), version))
    assert (last / "model.safetensors").read_text().startswith(f"weights v{version}.")
    assert (last / "model_config.json").read_text() == json.dumps({"v": version})
    assert [p.name for p in last.parent.iterdir()] == ["last"]  # leftovers cleaned up
    assert len(notes) <= 1
    return version


def count_steps(tmp_path: Path) -> int:
    last, tok = tmp_path / "count" / "checkpoints" / "last", tmp_path / "tokenizer.json"
    save(last, 1, tok)
    log: list[str] = []
    with faults(lambda name: None, at=-1, when="before", log=log):
        save(last, 2, tok)
    assert {"torch.save", "llmlab.train.checkpoint.replace_path"} <= set(log)
    return len(log)


@pytest.fixture(autouse=True)
def no_disk_flush(monkeypatch) -> None:
    """fsync guards against power loss, not against a killed process (which these tests simulate); a no-op keeps
    the hundreds of saves fast. Each fsync call is still a step where a fault is injected."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


@pytest.fixture(params=["exchange", "rename-aside"])
def exchange_mode(request, monkeypatch, tmp_path: Path) -> str:
    """Run with renameat2's atomic exchange, and with the fallback that renames the old folder aside first."""
    if request.param == "rename-aside":
        monkeypatch.setattr(io_files, "_exchange", None)
        return request.param
    (tmp_path / "probe-a").mkdir(), (tmp_path / "probe-b").mkdir()
    if not io_files.exchange_paths(tmp_path / "probe-a", tmp_path / "probe-b"):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available on this file system")
    shutil.rmtree(tmp_path / "probe-a"), shutil.rmtree(tmp_path / "probe-b")
    return request.param


def test_a_fault_at_every_step_of_a_save_loses_nothing(tmp_path: Path, exchange_mode: str) -> None:
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    n_steps = count_steps(tmp_path)
    assert n_steps > 10
    outcomes = {1: 0, 2: 0}
    for when in ("before", "after"):
        for k in range(n_steps):
            run = tmp_path / f"{when}-{k}"
            last = run / "checkpoints" / "last"
            save(last, 1, tok)

            def fail(name: str) -> None:
                raise InjectedFault(f"injected fault in {name}")

            log: list[str] = []
            try:
                with faults(fail, at=k, when=when, log=log):
                    save(last, 2, tok)
            except InjectedFault:
                pass
            if exchange_mode == "exchange":  # `last` is complete at every instant, before any repair
                assert is_complete_checkpoint(last), (when, k, log[k])
            outcomes[assert_loads(last, {1, 2})] += 1
            save(last, 3, tok)  # the next save succeeds and cleans up
            assert assert_loads(last, {3}) == 3
            shutil.rmtree(run)
    assert outcomes[1] > 0 and outcomes[2] > 0  # faults hit both sides of the swap


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_b_sigkill_at_every_step_of_a_save_loses_nothing(tmp_path: Path, exchange_mode: str) -> None:
    tok = tmp_path / "tokenizer.json"
    tok.write_text("{}")
    n_steps = count_steps(tmp_path)
    for when in ("before", "after"):
        for k in range(n_steps):
            run = tmp_path / f"{when}-{k}"
            last = run / "checkpoints" / "last"
            save(last, 1, tok)
            pid = os.fork()
            if pid == 0:  # the child: save v2 and die at step k
                try:
                    with faults(lambda name: os.kill(os.getpid(), signal.SIGKILL), at=k, when=when, log=[]):
                        save(last, 2, tok)
                finally:
                    os._exit(0)
            _, status = os.waitpid(pid, 0)
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (when, k, status)
            if exchange_mode == "exchange":
                assert is_complete_checkpoint(last), (when, k)
            assert_loads(last, {1, 2})
            save(last, 3, tok)
            assert assert_loads(last, {3}) == 3
            shutil.rmtree(run)


def leftover_state(ckpts: Path, tok: Path) -> None:
    """What a kill in the rename-aside window leaves: no `last`, the old copy (v1) set aside, the new one (v2)
    complete in its temp folder, and a half-written temp folder of another save."""
    save(ckpts / "last", 1, tok)
    os.replace(ckpts / "last", ckpts / ".last.old-1")
    save(ckpts / "last", 2, tok)
    os.replace(ckpts / "last", ckpts / ".last.tmp-new")
    shutil.copytree(ckpts / ".last.tmp-new", ckpts / ".last.tmp-half")
    (ckpts / ".last.tmp-half" / "trainer_state.pt").unlink()


def test_a_fault_at_every_step_of_a_recovery_loses_nothing(tmp_path: Path, exchange_mode: str) -> None:
    tok = tmp_path / "tokenizer.json"
    log: list[str] = []
    leftover_state(tmp_path / "count" / "checkpoints", tok)
    with faults(lambda name: None, at=-1, when="before", log=log):
        find_checkpoint(tmp_path / "count" / "checkpoints", report=lambda line: None)
    assert len(log) > 3
    for when in ("before", "after"):
        for k in range(len(log)):
            ckpts = tmp_path / f"{when}-{k}" / "checkpoints"
            leftover_state(ckpts, tok)

            def fail(name: str) -> None:
                raise InjectedFault(f"injected fault in {name}")

            try:
                with faults(fail, at=k, when=when, log=[]):
                    find_checkpoint(ckpts, report=lambda line: None)
            except InjectedFault:
                pass
            assert assert_loads(ckpts / "last", {2}) == 2  # the repair, run again, finishes the job


def test_recovery_restores_a_hidden_copy_and_drops_half_written_ones(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    tok = tmp_path / "tokenizer.json"
    save(ckpts / "last", 4, tok)
    save(ckpts / "best", 3, tok)
    os.replace(ckpts / "last", ckpts / ".last.old-77")  # killed between the two renames of the fallback
    half = ckpts / ".last.tmp-abc"  # a newer save cut short: no manifest
    shutil.copytree(ckpts / ".last.old-77", half)
    (half / "checkpoint.json").unlink()
    cut = ckpts / ".best.tmp-xyz"  # a newer "best" whose weights were cut short
    shutil.copytree(ckpts / "best", cut)
    with open(cut / "model.safetensors", "r+") as f:
        f.truncate(5)
    notes: list[str] = []
    assert find_checkpoint(tmp_path, report=notes.append) == ckpts / "last"  # a run folder works too
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last"]
    assert load_trainer_state(ckpts / "last")["iter"] == 4 and load_trainer_state(ckpts / "best")["iter"] == 3
    assert len(notes) == 2 and "restored .last.old-77 (iteration 4) as last" in notes[1], notes
    assert find_checkpoint(ckpts, report=notes.append) == ckpts / "last" and len(notes) == 2  # nothing left to do


def test_recovery_promotes_a_complete_newer_copy(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    save(ckpts / "last", 5, tmp_path / "none")
    shutil.copytree(ckpts / "last", ckpts / ".keep")
    save(ckpts / "last", 6, tmp_path / "none")
    os.replace(ckpts / "last", ckpts / ".last.tmp-newer")  # complete, not yet swapped in
    os.replace(ckpts / ".keep", ckpts / "last")
    assert find_checkpoint(ckpts / "last", report=lambda line: None) == ckpts / "last"
    assert load_trainer_state(ckpts / "last")["iter"] == 6


def test_no_checkpoint_and_incomplete_ones(tmp_path: Path) -> None:
    assert find_checkpoint(tmp_path / "run", report=print) is None
    last = tmp_path / "checkpoints" / "last"
    save(last, 1, tmp_path / "none")
    (last / "model.safetensors").write_text("short")
    assert not is_complete_checkpoint(last)
    with pytest.raises(FileNotFoundError, match="incomplete.*checkpoint.json"):
        load_trainer_state(last)
    assert find_checkpoint(last, repair=False) is None
    assert last.is_dir()  # a visible folder is never deleted by recovery


def test_a_checkpoint_of_an_older_llmlab_without_manifest_still_loads(tmp_path: Path) -> None:
    ckpts = tmp_path / "checkpoints"
    old = ckpts / ".old-last-123"  # the old save's window: `last` renamed aside, new one not yet in
    old.mkdir(parents=True)
    torch.save({"iter": 9}, old / "trainer_state.pt")
    (ckpts / ".tmp-last-abc").mkdir()  # its half-written successor
    (ckpts / ".tmp-last-abc" / "trainer_state.pt").write_bytes(b"cut")
    assert find_checkpoint(ckpts, report=lambda line: None) == ckpts / "last"
    assert load_trainer_state(ckpts / "last")["iter"] == 9
    assert sorted(p.name for p in ckpts.iterdir()) == ["last"]


def test_checkpoint_folders_follow_the_permission_policy(tmp_path: Path) -> None:
    last = save(tmp_path / "checkpoints" / "last", 1, tmp_path / "none")
    assert last.stat().st_mode & 0o777 == io_files.dir_mode()
    assert (last / "checkpoint.json").stat().st_mode & 0o777 == io_files.file_mode()


# ------------------------------------------------------------------------------------- (c) kill -9 of training
ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
MAX_ITERS = 24


def save_interval_key() -> str:
    """The name TrainConfig gives the checkpoint interval (``ckpt_interval`` today, ``save_interval`` later)."""
    from llmlab.train.config import TrainConfig

    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return next(name for name in ("save_interval", "ckpt_interval") if name in names)


def pretrain_args(corpus: Path, out: Path, *extra: str) -> list[str]:
    """Arguments of `llmlab pretrain`: 24 steps of the tiny config, a checkpoint after every step."""
    return [
        "--config",
        str(TINY),
        f"data.dir={corpus}",
        f"out_dir={out}",
        f"train.max_iters={MAX_ITERS}",
        "train.eval_interval=6",
        f"train.{save_interval_key()}=1",
        "train.tensorboard=true",
        *extra,
    ]


def tb_scalars(tb_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def logged_up_to(metrics: Path, stale_inode: int | None) -> int:
    """The last iteration in `metrics` once the new process has rewritten it (0 before)."""
    from llmlab.train.logging import read_metrics

    if not metrics.exists() or metrics.stat().st_ino == stale_inode:
        return 0
    return max((r["iter"] for r in read_metrics(metrics)), default=0)


@pytest.mark.slow
def test_c_random_kill9_of_pretraining_then_resume_is_exact(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from llmlab.train.logging import read_metrics
    from tests.recipes.test_pretrain import make_corpus, run_cli

    corpus = make_corpus(tmp_path / "corpus")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ref = tmp_path / "ref"
    assert run_cli(*pretrain_args(corpus, ref)) == 0  # the uninterrupted run, in this process

    rng = random.Random(9)
    out = tmp_path / "killed"
    kills, done = 0, 0
    while kills < 3:  # kill at a random moment after a random iteration, between 1 and 22 of 24
        target = rng.randint(done + 1, MAX_ITERS - 2 - (2 - kills))
        resume = ["--resume"] if find_checkpoint(out, repair=False) is not None else []
        metrics = out / "metrics.jsonl"
        stale = metrics.stat().st_ino if metrics.exists() else None  # the run rewrites it (truncated) first
        proc = subprocess.Popen(
            [sys.executable, "-m", "llmlab", "pretrain", *pretrain_args(corpus, out, *resume)],
            env=env,
            stdout=subprocess.DEVNULL,
        )

        while proc.poll() is None and logged_up_to(metrics, stale) < target:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.03))  # anywhere in the step: forward, backward, logging or saving
        assert proc.poll() is None, "the run ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=120) == -signal.SIGKILL
        kills += 1
        done = target
    resume = ["--resume"] if find_checkpoint(out, repair=False) is not None else []
    assert run_cli(*pretrain_args(corpus, out, *resume)) == 0  # finish the run

    def timeless(run: Path) -> list[dict]:  # every field but the wall-clock ones
        return [
            {k: v for k, v in row.items() if k not in ("tokens_per_sec", "elapsed")}
            for row in read_metrics(run / "metrics.jsonl")
        ]

    assert timeless(out) == timeless(ref) and len(timeless(ref)) == MAX_ITERS
    ref_w = load_file(ref / "checkpoints" / "last" / "model.safetensors")
    got_w = load_file(out / "checkpoints" / "last" / "model.safetensors")
    assert ref_w.keys() == got_w.keys() and all(torch.equal(ref_w[k], got_w[k]) for k in ref_w)
    ref_tb, got_tb = tb_scalars(ref / "tb"), tb_scalars(out / "tb")
    assert ref_tb["train/loss"] == got_tb["train/loss"]  # steps logged once each, values identical
    assert [s for s, _ in got_tb["val/loss"]] == [s for s, _ in ref_tb["val/loss"]]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last"]
