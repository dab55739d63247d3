"""A small BERT pretrained from scratch on Shakespeare with MLM alone vs MLM+NSP vs MLM+SOP (issue 14).

Same model, data, steps and seeds for the three arms (``llmlab pretrain objective=mlm|mlm_nsp|mlm_sop``); every
arm sees ``[CLS] A [SEP] B [SEP]`` pairs (MLM alone: B is always the true next segment). After training, every
model is evaluated on the SAME held-out sets (the tail 10% of every play): MLM accuracy on true-next pairs with
fixed masks, and the sentence head (where there is one) on both NSP and SOP pairs (cross-task transfer, as in
ALBERT's Table 5). Writes the MLM-accuracy curves to docs/encoders/bert_pretrain_mlm_accuracy.png and prints one
JSON object as the last line.

    python benchmarks/bert_pretrain.py --iters 400 --out /tmp/bert-pretrain
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_utils import log  # noqa: E402

ARMS = ("mlm", "mlm_nsp", "mlm_sop")


def arm_overrides(args: argparse.Namespace, objective: str) -> list[str]:
    return [
        f"objective={objective}", "model.preset=bert-mini", f"model.config.hidden_size={args.hidden}",
        f"model.config.num_hidden_layers={args.layers}", f"model.config.num_attention_heads={args.heads}",
        f"model.config.intermediate_size={4 * args.hidden}", f"data.max_chars={args.max_chars}",
        f"data.max_length={args.max_length}", "data.val_fraction=0.1", f"train.batch_size={args.batch_size}",
        f"train.max_iters={args.iters}",
        f"train.eval_interval={args.eval_interval}", "train.eval_iters=8", "train.log_interval=10",
        "train.save_interval=0", "train.progress=false", "train.tensorboard=false", f"train.seed={args.seed}",
        f"optim.lr={args.lr}", f"schedule.warmup_iters={args.iters // 10}", f"out_dir={args.out}/{objective}",
        "overwrite=true", *([f"tokenizer={args.tokenizer}"] if args.tokenizer else []),
    ]  # fmt: skip


@torch.no_grad()
def held_out(model: torch.nn.Module, batches: list[dict], sentence: bool) -> dict[str, float]:
    """MLM (and sentence-task) accuracy of `model` over fixed batches, dropout off."""
    from llmlab.models.pretraining_heads import MaskedLMPretraining

    module = MaskedLMPretraining(model, 1.0 if sentence else 0.0).eval()
    counts: dict[str, int] = {}
    for batch in batches:
        for key, value in module(batch).counts.items():
            counts[key] = counts.get(key, 0) + value
    out = {"mlm_accuracy": counts["mlm_correct"] / counts["mlm_total"], "masked_tokens": counts["mlm_total"]}
    if sentence:
        out["sentence_accuracy"] = counts["sentence_correct"] / counts["sentence_total"]
        out["pairs"] = counts["sentence_total"]
    return out


def curves(run: Path) -> dict[str, list]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_mlm_accuracy" in r]
    return {
        "iter": [r["iter"] for r in rows], "train_mlm_accuracy": [r["mlm_accuracy"] for r in rows],
        "val_iter": [r["iter"] for r in val], "val_mlm_accuracy": [r["val_mlm_accuracy"] for r in val],
    }  # fmt: skip


def plot(all_curves: dict[str, dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for (arm, c), color in zip(all_curves.items(), ("tab:blue", "tab:orange", "tab:green"), strict=False):
        ax.plot(c["iter"], c["train_mlm_accuracy"], color=color, alpha=0.3, linewidth=0.8)
        ax.plot(c["val_iter"], c["val_mlm_accuracy"], color=color, marker="o", markersize=3, label=f"{arm} (held-out)")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MLM accuracy (masked tokens)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=400)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-chars", type=int, default=600_000)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--eval-interval", type=int, default=50)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--tokenizer", default=None, help="tokenizer.json or folder (default: the packaged MiniLM's)")
    p.add_argument("--out", default="/tmp/bert-pretrain")
    p.add_argument("--figure", default=str(REPO / "docs" / "encoders" / "bert_pretrain_mlm_accuracy.png"))
    args = p.parse_args()
    torch.set_num_threads(1)

    from llmlab.models.bert import Bert
    from llmlab.recipes.pretrain_objectives import load_tokenizer_for, make_batches, pretrain_objective
    from llmlab.recipes.pretrain_objectives_config import load_objective_config

    results, all_curves = {}, {}
    for arm in ARMS:
        cfg = load_objective_config(None, arm_overrides(args, arm))
        log(f"== {arm}")
        t0 = time.perf_counter()
        summary = pretrain_objective(cfg, say=log)
        results[arm] = {"wall_s": round(time.perf_counter() - t0, 1), "params": summary["params"],
                        "train_examples": summary["train_examples"]}  # fmt: skip
        all_curves[arm] = curves(Path(args.out) / arm)

    base = load_objective_config(None, arm_overrides(args, "mlm"))
    tokenizer, specials, _ = load_tokenizer_for(base)
    eval_sets = {}
    for objective in ARMS:  # the common held-out sets: true-next (MLM), NSP and SOP pairs, fixed masks
        cfg = dataclasses.replace(base, objective=objective)
        cfg.train = dataclasses.replace(base.train, eval_iters=1000)
        eval_sets[objective] = make_batches(cfg, tokenizer, specials)[2]
    for arm in ARMS:
        model = Bert.from_pretrained(Path(args.out) / arm / "model").eval()
        results[arm]["held_out"] = {"mlm": held_out(model, eval_sets["mlm"], False)}
        if model.config.sentence_head:
            results[arm]["held_out"]["nsp"] = held_out(model, eval_sets["mlm_nsp"], True)
            results[arm]["held_out"]["sop"] = held_out(model, eval_sets["mlm_sop"], True)
        results[arm]["final_val_mlm_accuracy_curve"] = all_curves[arm]["val_mlm_accuracy"][-1]
    vocab = f"{tokenizer.vocab_size}-token vocabulary"
    title = (f"BERT {args.layers}x{args.hidden} from scratch on Shakespeare, {vocab}\n({args.iters} steps x "
             f"{args.batch_size} pairs of <= {args.max_length} tokens)")  # fmt: skip
    plot(all_curves, Path(args.figure), title)
    report = {"setup": vars(args), "arms": results, "curves": all_curves}
    (Path(args.out) / "results.json").write_text(json.dumps(report, indent=1))
    print(json.dumps({"setup": vars(args), "arms": results}))


if __name__ == "__main__":
    main()
