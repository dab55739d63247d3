"""Ensembling, model soups and EMA on a harness task: does combining models help, and by how much?

Three char-level GPTs (`configs/pretrain/shakespeare-char.yaml`, 0.8M parameters) are pretrained on
tinyshakespeare with ONE initialisation (`train.seed`) and three data orders (`train.data_seed` 1, 2, 3), each
keeping an EMA of its weights (`train.ema_decay`). Then, on the `shakespeare_cloze` task (200 four-way cloze
questions from a play none of them trained on; 0-shot) and on the validation loss (nats/char on the first
30,000 characters of tinyshakespeare's last 10%, never trained on, scored in disjoint windows of the context),
it compares:

- each single model, and the EMA of run A;
- `EnsembleLM` probability averaging (`--ensemble mean`) and majority voting (`--ensemble vote`) of the three;
- the uniform model soup of the three (`llmlab average`, Wortsman et al. 2022) and the soup of A with its EMA.

Standard errors: per system, the sample stderr of per-question accuracy; per difference against run A, the
stderr of the per-question paired difference (the same 200 questions), which is what decides whether a gain is
real. Every model is made by the real commands (`llmlab data prepare`, `llmlab pretrain`, `llmlab average`).

    python benchmarks/ensemble.py                       # ~5 minutes on 2 cores
    python benchmarks/ensemble.py --iters 300 --work /tmp/ens-quick

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

from bench_utils import log

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"


def llmlab(*args: str) -> None:
    """Run one llmlab command (quietly); stop the benchmark with its stderr if it fails."""
    cmd = [sys.executable, "-m", "llmlab", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")


def make_models(work: Path, iters: int, ema_decay: float) -> dict[str, Path]:
    """Prepare the char corpus, pretrain runs A, S2, S3 (one init, three data orders) and the two soups."""
    data = work / "data"
    if not data.exists():
        llmlab("data", "prepare", "--config", "configs/data/tinyshakespeare-char.yaml", "--out", str(data))
    runs = {}
    for name, data_seed in (("A", 1), ("S2", 2), ("S3", 3)):
        out = work / name
        if not (out / "checkpoints" / "last").exists():
            log(f"pretraining {name} (train.data_seed={data_seed}, {iters} steps)")
            llmlab(
                "pretrain", "--config", "configs/pretrain/shakespeare-char.yaml", f"data.dir={data}",
                f"out_dir={out}", "train.seed=1337", f"train.data_seed={data_seed}", f"train.max_iters={iters}",
                f"schedule.decay_iters={iters}", f"train.ema_decay={ema_decay}", "train.save_interval=0",
                "train.eval_interval=0", "train.progress=false", "train.tensorboard=false", "train.save_best=false",
            )  # fmt: skip
        runs[name] = out
    runs["EMA(A)"] = work / "A" / "checkpoints" / "last" / "ema"
    for name, members in (("soup(A,S2,S3)", ["A", "S2", "S3"]), ("soup(A,EMA(A))", ["A", "EMA(A)"])):
        out = work / name.replace("(", "_").replace(")", "").replace(",", "_")
        if not out.exists():
            llmlab("average", *[str(runs[m]) for m in members], "--out", str(out))
        runs[name] = out
    return runs


def stderr(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmlab-bench-ensemble"), help="models go here")
    parser.add_argument("--iters", type=int, default=600, help="pretraining steps per run")
    parser.add_argument("--ema-decay", type=float, default=0.99)
    args = parser.parse_args()

    from llmlab.eval.ensemble import EnsembleLM
    from llmlab.eval.harness.lm import ModelLM
    from llmlab.eval.harness.runner import evaluate
    from llmlab.eval.harness.task import load_task
    from llmlab.hub import load_for_inference

    start = time.perf_counter()
    runs = make_models(args.work, args.iters, args.ema_decay)
    text = SHARED.read_text(encoding="utf-8")
    val = text[int(len(text) * 0.9) :][:30000]
    task = load_task("shakespeare_cloze")
    systems = {}
    for name, path in runs.items():
        loaded = load_for_inference(path, "cpu")
        systems[name] = ModelLM(loaded.model, loaded.tokenizer, batch_size=64, name=name)
    members = [systems["A"], systems["S2"], systems["S3"]]
    systems["mean(A,S2,S3)"] = EnsembleLM(members, "mean")
    systems["vote(A,S2,S3)"] = EnsembleLM(members, "vote")
    block = systems["A"].max_length
    windows = [(val[i : i + 1], val[i + 1 : i + block]) for i in range(0, len(val) - block, block)]
    val_loss = {  # disjoint windows of the model's context, the first character of each as the context
        name: -sum(float(lp.sum()) for lp, _ in lm.score(windows)) / sum(len(c) for _, c in windows)
        for name, lm in systems.items()
        if not name.startswith("vote")
    }

    per_question: dict[str, list[float]] = {}
    rows = []
    for name, lm in systems.items():
        work = args.work / "samples" / name.replace("(", "_").replace(")", "").replace(",", "_")
        work.mkdir(parents=True, exist_ok=True)
        result = evaluate(lm, [task], samples_path=work)["shakespeare_cloze"]
        lines = (work / "samples_shakespeare_cloze.jsonl").read_text(encoding="utf-8").splitlines()
        per_question[name] = [float(json.loads(line)["acc"]) for line in lines]
        diff = [a - b for a, b in zip(per_question[name], per_question["A"], strict=True)]
        rows.append({
            "system": name, "acc": result["acc"], "acc_stderr": result["acc_stderr"],
            "delta_vs_A": sum(diff) / len(diff), "delta_stderr": stderr(diff) if any(diff) else 0.0,
            "val_loss": val_loss.get(name),
        })  # fmt: skip
    print(f"{'system':16s} {'acc':>7s} {'± se':>7s} {'Δ vs A':>8s} {'± se':>7s} {'val loss':>9s}")
    for r in rows:
        vl = "—" if r["val_loss"] is None else f"{r['val_loss']:.4f}"
        print(
            f"{r['system']:16s} {r['acc']:7.3f} {r['acc_stderr']:7.3f} {r['delta_vs_A']:+8.3f} "
            f"{r['delta_stderr']:7.3f} {vl:>9s}"
        )
    print(json.dumps({"task": "shakespeare_cloze", "n": len(per_question["A"]), "iters": args.iters,
                      "seconds": round(time.perf_counter() - start, 1), "systems": rows}))  # fmt: skip


if __name__ == "__main__":
    main()
