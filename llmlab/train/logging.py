"""Training telemetry: ``metrics.jsonl`` (one JSON object per log line), TensorBoard scalars, a progress bar,
and the end-of-run summary (printed on one screen and saved as ``summary.json``).

Only rank 0 logs; on other ranks `MetricsLogger` and `Progress` are silent no-ops.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from tqdm.auto import tqdm

from llmlab.io import atomic_write, atomic_write_json, atomic_write_text


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON atomically with the shared file mode (`llmlab.io.atomic_write_json`)."""
    atomic_write_json(path, obj)


def read_metrics(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Parse a ``metrics.jsonl`` file (skipping a truncated last line left by a crash)."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def truncate_metrics(path: Path, last_iter: int) -> None:
    """Keep only rows with ``iter <= last_iter`` (on resume, drop what was logged after the checkpoint)."""
    if not path.exists():
        return
    rows = [r for r in read_metrics(path) if r.get("iter", 0) <= last_iter]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def truncate_tensorboard(tb_dir: Path, last_step: int) -> None:
    """Rewrite the event files in `tb_dir` without events after `last_step` (the lost tail of an interrupted run)
    and without earlier purge markers, each file atomically; files with nothing to drop stay untouched.

    Old purge markers go too: TensorBoard reads the files in name order (a timestamp in seconds, then host and
    pid), so an old marker in a file that sorts after the resumed run's would hide the resumed run's events.
    """
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.record_writer import RecordWriter

    for path in sorted(Path(tb_dir).glob("*tfevents*")):
        records = list(RawEventFileLoader(str(path)).Load())  # stops at a record cut short by a kill
        kept = [r for r in records if (e := Event.FromString(r)).step <= last_step and not e.HasField("session_log")]
        if len(kept) == len(records) and path.stat().st_size == sum(len(r) + 16 for r in records):
            continue

        def write(tmp: Path, kept: list[bytes] = kept) -> None:
            with open(tmp, "wb") as f:
                writer = RecordWriter(f)
                for record in kept:
                    writer.write(record)

        atomic_write(path, write)


def _wait_for_a_later_second(tb_dir: Path) -> None:
    """Sleep (< 1 s) until the clock's second is past every event file's timestamp in `tb_dir`.

    Event files are named ``events.out.tfevents.<unix seconds>.<host>.<pid>...`` and TensorBoard reads them in
    name order, treating a step that goes backwards as a restart that purges later steps. A resumed run's file
    must therefore sort after the earlier ones; within the same second the pid decides, and pids compare as
    text ("10023" < "9876"), so a fast kill-and-resume could hide the resumed run's steps.
    """
    stamps = [p.name.split(".")[3] for p in tb_dir.glob("events.out.tfevents.*")]
    newest = max((int(s) for s in stamps if s.isdigit()), default=0)
    while int(time.time()) <= newest:
        time.sleep(0.05)


class MetricsLogger:
    """Appends log rows to ``out_dir/metrics.jsonl`` and mirrors numeric fields to TensorBoard (``out_dir/tb``).

    On a resume (``append=True``) TensorBoard is trimmed like ``metrics.jsonl``: the event files lose what was
    logged after the checkpoint (`truncate_tensorboard`), and the writer is opened with ``purge_step`` so that a
    TensorBoard already showing the lost tail drops it too. No step is shown twice.

    Args:
        out_dir: the run folder.
        enabled: False on ranks other than 0 (then every method does nothing).
        tensorboard: also write TensorBoard event files.
        append: keep an existing ``metrics.jsonl`` (resume) instead of starting a new one.
        resume_step: the checkpoint's iteration on a resume (default: the last ``iter`` in ``metrics.jsonl``,
            which `truncate_metrics` already cut to the checkpoint); TensorBoard events after it are purged.
    """

    def __init__(
        self,
        out_dir: Path,
        enabled: bool = True,
        tensorboard: bool = True,
        append: bool = False,
        resume_step: int | None = None,
    ) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            atomic_write_text(self.path, "")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge_step = None
            if append:
                if resume_step is None:
                    resume_step = max((int(r.get("iter", 0)) for r in read_metrics(self.path)), default=0)
                purge_step = resume_step + 1
                truncate_tensorboard(Path(out_dir) / "tb", resume_step)
                _wait_for_a_later_second(Path(out_dir) / "tb")
            self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"), purge_step=purge_step)

    def log(self, row: dict[str, Any]) -> None:
        """Write one row (must contain ``iter``)."""
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        if self._tb is not None:
            step = int(row["iter"])
            for key, value in row.items():
                if key != "iter" and isinstance(value, (int, float)) and math.isfinite(value):
                    self._tb.add_scalar(f"train/{key}" if key != "val_loss" else "val/loss", value, step)
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock_text(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Progress over iterations showing loss and tokens/s; silent off rank 0.

    On a terminal it is a tqdm bar (tqdm adds the ETA). When the stream is not a terminal (CI logs, ``nohup``,
    a pipe) it prints plain lines instead of carriage-return frames: one every `every_fraction` of the run or
    every `every_s` seconds, whichever comes first, and one at the end.

    Args:
        total: the last iteration.
        initial: the iteration it starts from (a resume).
        enabled: False off rank 0 or when the config turns progress off.
        desc: the label of the bar / the lines.
        stream: where to write (default ``sys.stderr``).
        every_fraction: plain mode: print at least every this fraction of the run.
        every_s: plain mode: print at least every this many seconds.
        clock: a seconds clock (tests pass a fake one).
    """

    def __init__(
        self,
        total: int,
        initial: int,
        enabled: bool,
        desc: str = "pretrain",
        stream: TextIO | None = None,
        every_fraction: float = 0.1,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.bar = None  # the tqdm bar on a terminal; None in plain-line mode and when disabled
        self.plain = enabled and not _is_terminal(self.stream)
        if enabled and not self.plain:
            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="it", dynamic_ncols=True, file=self.stream)
        self.total, self.n, self.desc, self.clock = total, initial, desc, clock
        self.every_steps = max(1, math.ceil((total - initial) * every_fraction))
        self.every_s = every_s
        self._start_n, self._t0 = initial, clock()
        self._last_n, self._last_t = initial, self._t0
        self._postfix: dict[str, Any] = {}

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)
        if not self.plain:
            return
        self.n += n
        self._postfix.update(postfix)
        now = self.clock()
        if self.n - self._last_n >= self.every_steps or now - self._last_t >= self.every_s or self.n >= self.total:
            self._print_line(now)

    def _print_line(self, now: float) -> None:
        elapsed = now - self._t0
        rate = (self.n - self._start_n) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.n) / rate if rate > 0 else 0.0
        pct = 100.0 * self.n / self.total if self.total else 100.0
        line = f"{self.desc}: {self.n}/{self.total} it ({pct:.0f}%), {rate:.2f} it/s, elapsed {_clock_text(elapsed)}"
        line += f", ETA {_clock_text(eta)}" if self.n < self.total else ""
        line += "".join(f", {key} {value}" for key, value in self._postfix.items())
        print(line, file=self.stream, flush=True)
        self._last_n, self._last_t = self.n, now

    def write(self, msg: str) -> None:
        """Print a line without breaking the bar (a plain print when there is no bar; nothing when disabled)."""
        if self.bar is not None:
            self.bar.write(msg)
        elif self.enabled:
            print(msg, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.plain and self.n != self._last_n:
            self._print_line(self.clock())
        self.plain = False


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "tokens_per_sec":
        return f"{value:,.0f}"
    if key == "wall_time_s":
        return f"{value:,.1f}"
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_summary(summary: dict[str, Any], title: str = "pretraining") -> str:
    """The end-of-run summary as an aligned block of ``name: value`` lines under ``── <title> summary``."""
    labels = {
        "params": "parameters",
        "iters": "iterations",
        "tokens_seen": "tokens seen",
        "best_val_loss": "best val loss",
        "final_val_loss": "final val loss",
        "final_train_loss": "final train loss",
        "tokens_per_sec": "tokens/s",
        "wall_time_s": "wall time (s)",
        "precision": "precision",
        "device": "device",
        "world_size": "processes",
        "checkpoint": "checkpoint",
        "best_checkpoint": "best checkpoint",
        "out_dir": "run folder",
    }
    width = max(len(v) for v in labels.values())
    lines = [f"── {title} summary " + "─" * 40]
    for key, label in labels.items():
        if key in summary:
            lines.append(f"  {label:<{width}}  {_fmt(key, summary[key])}")
    return "\n".join(lines)
