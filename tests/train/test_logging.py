"""Training telemetry: metrics.jsonl and TensorBoard trimmed alike on resume; progress as a bar or as plain lines."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from llmlab.io import file_mode
from llmlab.train.logging import MetricsLogger, Progress, read_metrics, truncate_metrics, write_json_atomic


def tb_steps(tb_dir: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def log_rows(logger: MetricsLogger, steps: range, offset: float) -> None:
    for it in steps:
        logger.log({"iter": it, "loss": offset + it, "lr": 0.1})
    logger.close()


@pytest.mark.parametrize("explicit_step", [False, True])
def test_resume_trims_tensorboard_like_metrics(tmp_path: Path, explicit_step: bool) -> None:
    log_rows(MetricsLogger(tmp_path), range(1, 11), offset=0.0)  # the interrupted run logged 1..10
    (first,) = (tmp_path / "tb").iterdir()
    with open(first, "ab") as f:
        f.write(b"\x40\x00\x00")  # and was killed while writing a record
    truncate_metrics(tmp_path / "metrics.jsonl", 6)  # its checkpoint was at 6
    resumed = MetricsLogger(tmp_path, append=True, resume_step=6 if explicit_step else None)
    log_rows(resumed, range(7, 13), offset=100.0)  # the resumed run logs 7..12 with other values
    expected = [(it, float(it)) for it in range(1, 7)] + [(it, 100.0 + it) for it in range(7, 13)]
    assert tb_steps(tmp_path / "tb", "train/loss") == expected  # each step once, the lost tail gone
    assert [(r["iter"], r["loss"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == expected
    assert len(list((tmp_path / "tb").iterdir())) == 2  # one event file per session
    assert purge_markers(first) == [] and first.read_bytes()[-3:] != b"\x40\x00\x00"  # rewritten, torn record gone
    markers = [m for f in sorted((tmp_path / "tb").iterdir()) for m in purge_markers(f)]
    assert markers == [7]  # for a TensorBoard that had already read the lost tail


def purge_markers(event_file: Path) -> list[int]:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    return [e.step for e in EventFileLoader(str(event_file)).Load() if e.HasField("session_log")]


def test_resume_trims_tensorboard_whatever_order_the_event_files_sort_in(tmp_path: Path) -> None:
    """Two resumes within the same second: the newer event file can sort before the older one."""
    log_rows(MetricsLogger(tmp_path), range(1, 9), offset=0.0)
    truncate_metrics(tmp_path / "metrics.jsonl", 4)
    log_rows(MetricsLogger(tmp_path, append=True), range(5, 7), offset=10.0)  # killed again after 6
    files = sorted((tmp_path / "tb").iterdir())
    truncate_metrics(tmp_path / "metrics.jsonl", 5)
    log_rows(MetricsLogger(tmp_path, append=True), range(6, 10), offset=20.0)
    newest = next(f for f in (tmp_path / "tb").iterdir() if f not in files)
    newest.rename(tmp_path / "tb" / ("events.out.tfevents.0000000001" + newest.name.split("tfevents")[1][11:]))
    expected = [(it, float(it)) for it in range(1, 5)] + [(5, 15.0)] + [(it, 20.0 + it) for it in range(6, 10)]
    assert sorted(tb_steps(tmp_path / "tb", "train/loss")) == expected  # read in file order, each step once


def test_a_fresh_logger_starts_a_new_metrics_file(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text('{"iter": 3}\n')
    MetricsLogger(tmp_path, tensorboard=False).log({"iter": 1, "loss": 2.0})
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"iter": 1, "loss": 2.0}]
    assert not (tmp_path / "tb").exists()


def test_truncate_and_summary_are_atomic_with_the_shared_mode(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 1}\n{"iter": 2}\n{"iter": 3, "lo')  # a crash cut the last line
    truncate_metrics(path, 1)
    assert path.read_text() == '{"iter": 1}\n'
    write_json_atomic(tmp_path / "summary.json", {"loss": 1.5, "name": "é"})
    assert json.loads((tmp_path / "summary.json").read_text(encoding="utf-8")) == {"loss": 1.5, "name": "é"}
    for name in ("metrics.jsonl", "summary.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == file_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "summary.json"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_plain_lines_when_not_a_terminal(capsys) -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(100, 0, enabled=True, stream=stream, every_fraction=0.25, every_s=60, clock=clock)
    assert progress.bar is None  # callers print their own messages as plain lines
    for it in range(1, 101):
        clock.now = it * 0.5 + (100 if it >= 30 else 0)  # 2 it/s, with a 100 s stall before iteration 30
        progress.update(1, loss=f"{1 / it:.3f}")
    progress.write("a message")
    progress.close()
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert [line.split(" it ")[0] for line in lines] == [
        "pretrain: 25/100",
        "pretrain: 30/100",
        "pretrain: 55/100",
        "pretrain: 80/100",
        "pretrain: 100/100",
    ]
    assert lines[0] == "pretrain: 25/100 it (25%), 2.00 it/s, elapsed 0:00:12, ETA 0:00:37, loss 0.040"
    assert "ETA" not in lines[-1] and lines[-1].endswith("loss 0.010")
    assert capsys.readouterr().out == "a message\n"


def test_progress_on_resume_counts_from_the_checkpoint() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(20, 15, enabled=True, desc="sft", stream=stream, every_fraction=0.5, clock=clock)
    for _ in range(16, 19):
        clock.now += 1.0
        progress.update(1)
    progress.close()  # interrupted at 18: the last position is still reported
    lines = stream.getvalue().splitlines()
    assert lines == ["sft: 18/20 it (90%), 1.00 it/s, elapsed 0:00:03, ETA 0:00:02"]


def test_progress_draws_a_bar_on_a_terminal() -> None:
    stream = Terminal()
    progress = Progress(10, 0, enabled=True, stream=stream)
    assert progress.bar is not None
    for _ in range(10):
        progress.update(1, loss="1.0")
    progress.close()
    assert "\r" in stream.getvalue() and "10/10" in stream.getvalue()


def test_disabled_progress_is_silent(capsys) -> None:
    stream = io.StringIO()
    progress = Progress(10, 0, enabled=False, stream=stream)
    progress.update(5)
    progress.write("not rank 0")
    progress.close()
    assert stream.getvalue() == "" and capsys.readouterr().out == ""
