"""Training telemetry: ``metrics.jsonl`` (one JSON object per log line), TensorBoard scalars, a progress bar,
and the end-of-run summary (printed on one screen and saved as ``summary.json``).

Only rank 0 logs; on other ranks `MetricsLogger` and `Progress` are silent no-ops.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented JSON via a temp file + ``os.replace`` (never a half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jsonl")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    os.replace(tmp, path)


class MetricsLogger:
    """Appends log rows to ``out_dir/metrics.jsonl`` and mirrors numeric fields to TensorBoard (``out_dir/tb``).

    Args:
        out_dir: the run folder.
        enabled: False on ranks other than 0 (then every method does nothing).
        tensorboard: also write TensorBoard event files.
        append: keep an existing ``metrics.jsonl`` (resume) instead of starting a new one.
    """

    def __init__(self, out_dir: Path, enabled: bool = True, tensorboard: bool = True, append: bool = False) -> None:
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._tb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            self.path.write_text("", encoding="utf-8")
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(Path(out_dir) / "tb"))

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


class Progress:
    """A tqdm bar over iterations showing loss and tokens/s (tqdm adds the ETA); silent off rank 0."""

    def __init__(self, total: int, initial: int, enabled: bool) -> None:
        self.bar = (
            tqdm(total=total, initial=initial, desc="pretrain", unit="it", dynamic_ncols=True) if enabled else None
        )

    def update(self, n: int = 1, **postfix: Any) -> None:
        if self.bar is not None:
            if postfix:
                self.bar.set_postfix(postfix, refresh=False)
            self.bar.update(n)

    def write(self, msg: str) -> None:
        """Print a line without breaking the bar (plain print when the bar is disabled)."""
        if self.bar is not None:
            self.bar.write(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


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


def format_summary(summary: dict[str, Any]) -> str:
    """The end-of-run summary as an aligned block of ``name: value`` lines."""
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
    lines = ["── pretraining summary " + "─" * 40]
    for key, label in labels.items():
        if key in summary:
            lines.append(f"  {label:<{width}}  {_fmt(key, summary[key])}")
    return "\n".join(lines)
