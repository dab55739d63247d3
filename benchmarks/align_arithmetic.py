"""GRPO on verifiable arithmetic: SmolLM2-135M-Instruct (+ LoRA) accuracy on held-out 2-digit addition and
subtraction word problems (`llmlab.data.arithmetic`), greedy, before and after ``llmlab align grpo`` with the
``arithmetic`` reward (the first number of the answer must equal the true result).

    python benchmarks/align_arithmetic.py                      # defaults: the documented run
    python benchmarks/align_arithmetic.py --steps 20 --test 100  # a smaller run

Reports each accuracy with its 95% Wilson interval, the gain with a 95% paired-bootstrap interval and the exact
McNemar test on the same problems, plus the share of answers that start with a number (format) and the
accuracy of the LAST number written (a lenient check that separates format from arithmetic). Writes
``docs/alignment/arithmetic.json``; the last stdout line is the same JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion k/n."""
    if n == 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: b = right only before, c = right only after."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(0, min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(before: list[int], after: list[int], rounds: int = 10000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(after) - mean(before), resampling problems."""
    rng = random.Random(seed)
    n = len(before)
    diffs = [a - b for a, b in zip(after, before, strict=True)]
    stats = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(rounds))
    return stats[int(0.025 * rounds)], stats[int(0.975 * rounds) - 1]


def last_number_correct(completion: str, answer: Any) -> int:
    import re

    nums = re.findall(r"-?\d+", completion.replace(",", ""))
    return int(bool(nums) and int(nums[-1]) == int(answer))


def reward_name(args: argparse.Namespace) -> str:
    """The reward (and accuracy check) of the prompt style: the answer's first number, or with ``equation`` the
    last number of the answer's first line."""
    return "arithmetic_final" if args.style == "equation" else "arithmetic"


def accuracy(model_path: str | None, test_file: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Greedy answers of the model at `model_path` (None = the base) on the test problems, scored."""
    import torch

    from llmlab.align.evaluate import evaluate_policy
    from llmlab.align.rewards import REWARD_FUNCTIONS, first_number
    from llmlab.config.sampling import SamplingConfig
    from llmlab.data.preference import load_prompt_records
    from llmlab.hub import load_for_inference
    from llmlab.recipes.align import pad_id, stop_ids

    loaded = load_for_inference(model_path, device=args.device)
    model, tok = loaded.model.eval(), loaded.tokenizer
    chat = loaded.chat_template or "chatml"
    template = "chat" if args.style == "instruct" else "plain"
    records = load_prompt_records(test_file, tok, template=template, chat_template=chat, max_prompt_length=128)
    t0 = time.perf_counter()
    with torch.inference_mode():
        res = evaluate_policy(
            model, None, records, REWARD_FUNCTIONS[reward_name(args)], tokenizer=tok,
            sampling=SamplingConfig(temperature=0, max_new_tokens=args.max_new_tokens), eos_ids=stop_ids(tok, chat),
            pad_id=pad_id(tok), batch_size=args.eval_batch,
        )  # fmt: skip
    correct = [int(s["reward"]) for s in res.samples]
    answers = [r.record["answer"] for r in records]
    lenient = [last_number_correct(s["completion"], a) for s, a in zip(res.samples, answers, strict=True)]
    starts = [int(first_number(s["completion"][:8]) is not None) for s in res.samples]
    k, n = sum(correct), len(correct)
    return {
        "correct": correct, "accuracy": k / n, "ci95": wilson(k, n), "n": n,
        "last_number_accuracy": sum(lenient) / n, "starts_with_number": sum(starts) / n,
        "mean_length": res.length_mean, "seconds": time.perf_counter() - t0,
        "samples": [{"prompt": s["prompt"], "completion": s["completion"], "answer": a}
                    for s, a in zip(res.samples[:5], answers[:5], strict=True)],
    }  # fmt: skip


def train(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from llmlab.recipes.align import align, load_align_config

    template = "chat" if args.style == "instruct" else "plain"
    overrides = [
        f"data.train={data_dir / 'train.jsonl'}", f"data.val={data_dir / 'test.jsonl'}", f"out_dir={args.run_dir}",
        "overwrite=true", f"data.template={template}", "data.max_prompt_length=128", "data.max_length=192",
        f"train.max_iters={args.steps}", f"optim.lr={args.lr}", f"grpo.beta={args.beta}",
        f"grpo.num_generations={args.group}", f"grpo.prompts_per_step={args.prompts}",
        f"grpo.minibatch_size={args.group * args.prompts}", f"grpo.loss_type={args.loss_type}",
        f"rollout.max_new_tokens={args.max_new_tokens}", f"rollout.temperature={args.temperature}",
        f"train.device={args.device}", "train.eval_interval=0", "train.max_eval_examples=1", "train.save_interval=0",
        f"train.log_interval={max(1, args.steps // 20)}", "train.progress=false", f"train.seed={args.seed}",
        f"peft.r={args.lora_r}", f"peft.lora_alpha={2 * args.lora_r}",
        f"schedule.warmup_iters={max(1, args.steps // 10)}", f"reward.functions=[{reward_name(args)}]",
    ]  # fmt: skip
    cfg = load_align_config(ROOT / "configs/align/grpo-arithmetic.yaml", overrides, "grpo")
    t0 = time.perf_counter()
    summary = align(cfg, say=log)
    rows = [json.loads(x) for x in (Path(args.run_dir) / "metrics.jsonl").read_text().splitlines()]
    curve = [{"iter": r["iter"], "accuracy": r.get("accuracy"), "kl": r.get("kl")} for r in rows]
    return {"seconds": time.perf_counter() - t0, "final_train_accuracy": summary.get("final_accuracy"), "curve": curve}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", type=int, default=2000, help="training problems")
    p.add_argument("--test", type=int, default=200, help="held-out problems")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--group", type=int, default=8, help="completions per prompt")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--loss-type", default="grpo", choices=["grpo", "bnpo", "dr_grpo"])
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--eval-batch", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lang", choices=["en", "zh"], default="en")
    p.add_argument(
        "--style",
        choices=["equation", "fewshot", "instruct"],
        default="equation",
        help="prompt format (llmlab.data.arithmetic); equation is checked with arithmetic_final",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    p.add_argument("--workdir", default="runs/bench-align-arithmetic")
    p.add_argument("--json", default=str(ROOT / "docs/alignment/arithmetic.json"))
    args = p.parse_args()
    import torch

    from llmlab.data.arithmetic import write_arithmetic_splits

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.workdir)
    args.run_dir = str(work / "grpo")
    data_dir = work / "data"
    write_arithmetic_splits(data_dir, args.train, args.test, args.seed, args.lang, args.style, overwrite=True)
    log(f"data: {args.train} train / {args.test} held-out problems in {data_dir}")
    before = accuracy(None, data_dir / "test.jsonl", args)
    log(f"before: accuracy {before['accuracy']:.3f} {before['ci95']} ({before['seconds']:.0f}s)")
    trained = train(data_dir, args)
    after = accuracy(args.run_dir, data_dir / "test.jsonl", args)
    log(f"after: accuracy {after['accuracy']:.3f} {after['ci95']} ({after['seconds']:.0f}s)")
    b = sum(1 for x, y in zip(before["correct"], after["correct"], strict=True) if x and not y)
    c = sum(1 for x, y in zip(before["correct"], after["correct"], strict=True) if y and not x)
    result = {
        "model": "SmolLM2-135M-Instruct", "method": f"lora r={args.lora_r}", "lang": args.lang, "style": args.style,
        "check": reward_name(args),
        "train_problems": args.train, "test_problems": args.test,
        "grpo": {"steps": args.steps, "lr": args.lr, "beta": args.beta, "group": args.group,
                 "prompts_per_step": args.prompts, "temperature": args.temperature,
                 "max_new_tokens": args.max_new_tokens},
        "accuracy_before": before["accuracy"], "ci95_before": before["ci95"],
        "accuracy_after": after["accuracy"], "ci95_after": after["ci95"],
        "gain": after["accuracy"] - before["accuracy"],
        "gain_ci95_paired_bootstrap": paired_bootstrap(before["correct"], after["correct"], seed=args.seed),
        "mcnemar": {"only_before": b, "only_after": c, "p_value": mcnemar_exact(b, c)},
        "last_number_accuracy_before": before["last_number_accuracy"],
        "last_number_accuracy_after": after["last_number_accuracy"],
        "starts_with_number_before": before["starts_with_number"],
        "starts_with_number_after": after["starts_with_number"],
        "mean_length_before": before["mean_length"], "mean_length_after": after["mean_length"],
        "train_seconds": trained["seconds"], "train_curve": trained["curve"],
        "samples_before": before["samples"], "samples_after": after["samples"],
        "command": "python " + " ".join(sys.argv),
    }  # fmt: skip
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k not in ("train_curve", "samples_before", "samples_after")}))


if __name__ == "__main__":
    main()
