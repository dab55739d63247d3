"""What an evaluation leaves behind: a results table (task, n-shot, metric, value ± stderr), `results.json` and
one `samples_<task>.jsonl` per task (prompt, choices or targets, per-choice log-likelihoods or the generation,
and whether it was right)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from llmlab.io import atomic_write_json, atomic_write_text, json_safe

_RESERVED = ("num_fewshot", "n", "output_type")


def samples_file(folder: Path, task_name: str) -> Path:
    """`folder/samples_<task>.jsonl` (characters unsafe in a file name replaced by `_`)."""
    return Path(folder) / f"samples_{re.sub(r'[^A-Za-z0-9._-]', '_', task_name)}.jsonl"


def write_samples(folder: Path, task_name: str, records: list[dict[str, Any]]) -> Path:
    """One JSON object per document, in document order (atomic write)."""
    lines = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in records)
    return atomic_write_text(samples_file(folder, task_name), lines)


def metric_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, int, str, float, float, int]]:
    """(task, n-shot, metric, value, stderr, n) for every metric of every task, in the results' order."""
    rows = []
    for task, res in results.items():
        for key, value in res.items():
            if key in _RESERVED or key.endswith("_stderr"):
                continue
            rows.append((task, res["num_fewshot"], key, value, res.get(f"{key}_stderr", math.nan), res["n"]))
    return rows


def _fmt(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def format_table(results: dict[str, dict[str, Any]], title: str | None = None) -> str:
    """A plain-text table: task, n-shot, metric, value ± stderr, documents."""
    header = ("task", "n-shot", "metric", "value", "", "stderr", "n")
    body = [(t, str(k), m, _fmt(v), "±", _fmt(s), str(n)) for t, k, m, v, s, n in metric_rows(results)]
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = [title] if title else []
    for row in [header, *body]:
        pairs = enumerate(zip(row, widths, strict=True))
        cells = [c.rjust(w) if i in (1, 3, 5, 6) else c.ljust(w) for i, (c, w) in pairs]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def write_results(folder: Path, results: dict[str, dict[str, Any]], meta: dict[str, Any]) -> Path:
    """`folder/results.json`: {**meta, "results": per-task metrics} (NaN standard errors become null)."""
    return atomic_write_json(Path(folder) / "results.json", json_safe({**meta, "results": results}))
