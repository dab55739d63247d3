"""Code -> docstring with a sized-down T5 trained from scratch (docs/seq2seq.md): ROUGE-L / BLEU / chrF on
held-out stdlib MODULES, greedy vs beam search.

Data: `llmlab data docstrings --out DIR` (Python standard library function bodies -> first docstring line,
split by module, so no test module is trained on). Model and training: `configs/finetune/seq2seq-docstrings.yaml`
(`llmlab finetune task=seq2seq`); this script runs that recipe in-process with `torch.set_num_threads(--threads)`
and reports the test metrics of greedy decoding and beam search (4 beams).

    python benchmarks/seq2seq_docstrings.py --data data/docstrings --out runs/seq2seq-docstrings
    python benchmarks/seq2seq_docstrings.py --data data/docstrings --iters 50 --test-examples 50   # smoke run

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "finetune" / "seq2seq-docstrings.yaml"


def main(argv: list[str] | None = None, config: Path = CONFIG, title: str = "code -> docstring") -> dict:
    """Run the recipe on `--data`/{train,val,test}.jsonl; print the table and the JSON line; return the result."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder with train/val/test.jsonl ({source, target} records)")
    ap.add_argument("--out", default=None, help="run folder (default: the config's out_dir)")
    ap.add_argument("--iters", type=int, default=None, help="train.max_iters (default: the config's)")
    ap.add_argument("--test-examples", type=int, default=None, help="eval.max_examples (default: the config's)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--figure", default=None, help="also plot the train/val loss curves into this .png")
    ap.add_argument("overrides", nargs="*", help="more key=value config overrides")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from llmlab.recipes.finetune_seq2seq import finetune_seq2seq, load_seq2seq_config

    data = Path(args.data)
    overrides = [f"data.{split}={data / (split + '.jsonl')}" for split in ("train", "val", "test")]
    overrides += [f"out_dir={args.out}", "overwrite=true"] if args.out else ["overwrite=true"]
    overrides += [f"train.max_iters={args.iters}"] if args.iters else []
    overrides += [f"eval.max_examples={args.test_examples}"] if args.test_examples else []
    overrides += ["train.progress=false", *args.overrides]
    cfg = load_seq2seq_config(config, overrides)
    summary = finetune_seq2seq(cfg)
    decodings = [k for k in summary if k == "greedy" or k.startswith("beam")]
    print(f"\n{title}: {summary['train_examples']} training pairs, {summary['test_examples']} test pairs, "
          f"{summary['params']:,d} parameters, {summary['iters']} steps")  # fmt: skip
    print(f"{'decoding':<10} {'ROUGE-L':>8} {'BLEU':>7} {'chrF':>7}")
    for name in decodings:
        m = summary[name]
        print(f"{name:<10} {m['rougeL']:>8.2f} {m['bleu']:>7.2f} {m['chrf']:>7.2f}")
    result = {
        "task": title, "config": str(config), "overrides": overrides, "params": summary["params"],
        "iters": summary["iters"], "train_examples": summary["train_examples"],
        "test_examples": summary["test_examples"], "final_val_loss": summary.get("final_val_loss"),
        "test_loss": summary.get("test_loss"), **{name: summary[name] for name in decodings},
        "samples": summary.get("samples", []), "train_time_s": summary["train_time_s"],
    }  # fmt: skip
    if args.figure:
        plot_losses(Path(summary["out_dir"]) / "metrics.jsonl", Path(args.figure), title)
    print(json.dumps(result, ensure_ascii=False))
    return result


def plot_losses(metrics: Path, figure: Path, title: str) -> None:
    """Train loss (every logged step) and val loss (every evaluation) against the step, as a png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([r["iter"] for r in rows], [r["loss"] for r in rows], label="train loss", lw=1)
    val = [r for r in rows if r.get("val_loss") is not None]
    ax.plot([r["iter"] for r in val], [r["val_loss"] for r in val], "o-", label="val loss (held-out)")
    ax.set(xlabel="step", ylabel="cross-entropy per target token", title=title)
    ax.legend()
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)


if __name__ == "__main__":
    main()
