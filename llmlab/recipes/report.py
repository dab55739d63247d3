"""A short Markdown report for a training run: summary table, loss-curve PNG and samples."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmlab.io import atomic_write, atomic_write_text


def plot_loss_curve(records: list[dict[str, Any]], png_path: str | os.PathLike, title: str = "loss") -> None:
    """Train loss (every logged iteration) and val loss (every evaluation) against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [(r["iter"], r["loss"]) for r in records if r.get("loss") is not None]
    val = [(r["iter"], r["val_loss"]) for r in records if r.get("val_loss") is not None]
    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=120)
    if train:
        ax.plot([i for i, _ in train], [v for _, v in train], label="train", linewidth=1)
    if val:
        ax.plot([i for i, _ in val], [v for _, v in val], "o-", label="val", linewidth=1.5, markersize=3)
    ax.set_xlabel("iteration")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def write_report(
    run_dir: str | os.PathLike,
    title: str,
    facts: dict[str, Any],
    samples: list[tuple[str, str]],
    png_name: str = "loss_curve.png",
) -> Path:
    """Write `report.md` (facts table, loss curve, samples) into `run_dir`; returns its path."""
    run_dir = Path(run_dir)
    lines = [f"# {title}", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in facts.items()]
    lines += ["", f"![loss curve]({png_name})", "", "## Samples", ""]
    for prompt, text in samples:
        lines += [f"**Prompt:** `{prompt!r}`", "", "```text", text, "```", ""]
    out = run_dir / "report.md"
    atomic_write_text(out, "\n".join(lines))
    return out
