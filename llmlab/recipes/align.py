"""The alignment recipe behind ``llmlab align rm|dpo|ppo|grpo``: what the four objectives share.

    llmlab align rm   --config configs/align/rm-sentiment.yaml      # reward model (Bradley-Terry)
    llmlab align dpo  --config configs/align/dpo-lora.yaml          # DPO / IPO / cDPO / SimPO / ORPO
    llmlab align ppo  --config configs/align/ppo-sentiment.yaml     # RLHF with PPO
    llmlab align grpo --config configs/align/grpo-arithmetic.yaml   # GRPO, verifiable or model rewards

`align` checks the config, the data files and the run folder before anything is loaded or written, opens the
run (`llmlab.train.run_dir`: resume, overwrite policy, cleanup of a run that failed before its first
checkpoint), starts torchrun's process group (DDP) and hands over to the objective's runner
(`llmlab.recipes.align_<objective>.run`), which loads the models, builds its `llmlab.train.Trainer` subclass
from `llmlab.align` and writes its outputs with the helpers here. A policy run ends like ``llmlab finetune``:
``adapter/`` (PEFT) or ``model/`` (full) beside ``tokenizer.json``, so ``llmlab generate/chat/merge --checkpoint
<out_dir>`` load it; a reward-model run writes ``reward_model/`` (`llmlab.align.load_reward_model`).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any

from llmlab.recipes.align_config import OBJECTIVES, AlignConfig, load_align_config

__all__ = ["OBJECTIVES", "AlignConfig", "align", "load_align_config"]


def run_identity(cfg: AlignConfig) -> dict[str, Any]:
    """What a checkpoint must have been made from to be resumed with `cfg` (JSON primitives)."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    keys = ["objective", "base", "method", "peft", "reference", "data", cfg.objective]
    if cfg.objective in ("ppo", "grpo"):
        keys += ["rollout", "reward"]
    return {k: d[k] for k in keys} | {"train": {"seed": d["train"]["seed"]}}


def _check_inputs(cfg: AlignConfig) -> list[Path]:
    """The input files/folders exist (one-line errors); returns them (the run folder may not touch them)."""
    paths = [cfg.data.train, cfg.data.val, cfg.reward.model if cfg.objective in ("ppo", "grpo") else None]
    for p in paths:
        if p and not Path(p).exists():
            raise FileNotFoundError(f"not found: {p}")
    base = Path(cfg.base) if cfg.base else None
    return [Path(p) for p in (*paths, base) if p and Path(p).exists()]


def align(cfg: AlignConfig, say: Any = print) -> dict[str, Any]:
    """Run ``cfg.objective`` as configured; return the summary (also saved as ``summary.json``).

    Works as one process or under torchrun (DDP; only rank 0 writes and prints). With ``cfg.resume``, continues
    ``out_dir/checkpoints/last`` exactly.

    Raises:
        ValueError / FileNotFoundError: one line naming the problem, before anything is written.
    """
    from llmlab.train.distributed import barrier, cleanup, init_distributed
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import open_run

    cfg.validate()
    device, _ = check_runtime(cfg.train.device, cfg.train.precision, cfg.train.distributed)
    sources = _check_inputs(cfg)
    run = open_run(
        cfg.out_dir, f"align-{cfg.objective}", resume=cfg.resume, overwrite=cfg.overwrite,
        max_iters=cfg.train.max_iters, identity=run_identity(cfg), sources=sources,
    )  # fmt: skip
    runner = importlib.import_module(f"llmlab.recipes.align_{cfg.objective}")
    ctx = init_distributed(cfg.train.distributed, device.type)
    try:
        summary = runner.run(cfg, ctx, run, say if ctx.is_main else (lambda _msg: None))
        if ctx.is_main:
            summary["report"] = str(write_run_report(run.path, cfg.objective, summary))
        barrier(ctx)
        return summary
    finally:
        cleanup(ctx)


# ---------------------------------------------------------------------------------------------- shared pieces
def load_policy(cfg: AlignConfig, say: Any, *, apply: bool = True) -> tuple[Any, Any, str, str, str]:
    """Load ``cfg.base`` and make the method's parameters trainable.

    Returns:
        (model, tokenizer, chat_template, base_name, report): the chat template is ``data.chat_template``, else
        the model's own, else chatml; `report` the trainable-parameter line (printed).
    """
    from llmlab.hub import find_adapter_dir, load_for_inference
    from llmlab.recipes.finetune_config import DEFAULT_BASE_NAME

    base = Path(cfg.base) if cfg.base else None
    if base is not None and base.is_dir() and find_adapter_dir(base) is not None:
        raise ValueError(
            f"base={cfg.base} is an adapter on a base model; fold it in first (llmlab merge --adapter "
            f"{find_adapter_dir(base)} --out merged) and align the merged folder"
        )
    loaded = load_for_inference(cfg.base)
    model, tokenizer = loaded.model, loaded.tokenizer
    chat_template = cfg.data.chat_template or loaded.chat_template or "chatml"
    base_name = cfg.base or DEFAULT_BASE_NAME
    report = apply_method(model, cfg, base_name, tokenizer) if apply else ""
    if report:
        say(f"{cfg.method} {cfg.objective} of {base_name}: {report}")
    return model, tokenizer, chat_template, base_name, report


def apply_method(model: Any, cfg: AlignConfig, base_name: str, tokenizer: Any = None) -> str:
    """Make ``cfg.method``'s parameters of `model` trainable (adding PEFT layers); return the one-line report."""
    from llmlab.peft import count_parameters, get_peft_model
    from llmlab.recipes.finetune_config import peft_config

    if cfg.method == "full":
        model.requires_grad_(True)
    else:
        get_peft_model(model, peft_config(cfg.method, dict(cfg.peft), base_name, tokenizer))
    trainable, total = count_parameters(model)
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def load_prompts(cfg: AlignConfig, tokenizer: Any, chat_template: str) -> tuple[list[Any], list[Any]]:
    """(train, val) prompt records: ``data.val``, else ``data.val_fraction`` of ``data.train`` held out."""
    from llmlab.data.preference import load_prompt_records, split_held_out

    d = cfg.data

    def load(path: str) -> list[Any]:
        return load_prompt_records(
            path, tokenizer, template=d.template, chat_template=chat_template,
            max_prompt_length=d.max_prompt_length, add_bos=d.add_bos,
        )  # fmt: skip

    assert d.train is not None  # validate() checked it
    train = load(d.train)
    if d.val:
        val = load(d.val)
    else:
        train, val = split_held_out(train, d.val_fraction, cfg.train.seed)
    if cfg.train.max_eval_examples:
        val = val[: cfg.train.max_eval_examples]
    return train, val


def check_context(model: Any, cfg: AlignConfig) -> None:
    """The longest prompt plus the longest completion fit the model's context (one-line ValueError)."""
    from llmlab.nn.virtual import context_length

    room = context_length(model)
    need = cfg.data.max_prompt_length + cfg.rollout.max_new_tokens
    if need > room:
        raise ValueError(
            f"data.max_prompt_length + rollout.max_new_tokens = {need} exceeds the model's context of {room} "
            "tokens; lower one of them"
        )


def stop_ids(tokenizer: Any, chat_template: str) -> list[int]:
    """Token ids that end a sampled response: the template's end-of-turn tokens and EOS."""
    from llmlab.tokenizers.chat import turn_stops

    ids, _ = turn_stops(chat_template, tokenizer)
    return ids


def pad_id(tokenizer: Any) -> int:
    """The padding id (the tokenizer's pad, else EOS, else 0); masks hide it."""
    return next((int(i) for i in (tokenizer.pad_id, tokenizer.eos_id) if i is not None), 0)


def sampling_config(cfg: AlignConfig) -> Any:
    """The `SamplingConfig` of ``cfg.rollout``."""
    from llmlab.config.sampling import SamplingConfig

    r = cfg.rollout
    return SamplingConfig(
        max_new_tokens=r.max_new_tokens, temperature=r.temperature, top_k=r.top_k or None,
        top_p=r.top_p if r.top_p < 1 else None,
    )  # fmt: skip


def start_run(run: Any, cfg: AlignConfig, ctx: Any) -> None:
    """Rank 0 creates the run folder (config.yaml, marker) once every rank has checked it."""
    from llmlab.train.distributed import barrier

    barrier(ctx)
    if ctx.is_main:
        run.create(dataclasses.replace(cfg, resume=False))
    barrier(ctx)


def write_policy_outputs(model: Any, tokenizer: Any, cfg: AlignConfig, base_name: str, chat_template: str) -> str:
    """``adapter/`` (PEFT) or ``model/`` (full) and the tokenizer files in ``out_dir``, each atomic; the path."""
    from llmlab.recipes.finetune import write_outputs

    return write_outputs(model, tokenizer, cfg, base_name, chat_template)


CURVES = {  # what report.md plots per objective (metric names of metrics.jsonl), besides the loss
    "rm": ("accuracy", "val_accuracy"),
    "dpo": ("rewards_accuracy", "rewards_margin", "val_rewards_accuracy"),
    "ppo": ("reward", "kl", "response_length"),
    "grpo": ("reward", "kl", "response_length"),
}


def write_run_report(run_dir: Path, objective: str, summary: dict[str, Any]) -> Path:
    """``report.md`` in the run folder: the summary's facts, the loss curve, the objective's curves
    (`CURVES`, one PNG) and the samples the runner put in ``summary["samples"]`` (prompt, completion) pairs."""
    from llmlab.recipes.report import plot_loss_curve, write_report

    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines() if line]
    plot_loss_curve(rows, run_dir / "loss_curve.png", title=f"llmlab align {objective}")
    _plot_curves(rows, [k for k in CURVES[objective] if any(k in r for r in rows)], run_dir / "curves.png")
    facts = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in summary.items()
             if isinstance(v, (int, float, str)) and k != "report"}  # fmt: skip
    samples = [(str(p), str(c)) for p, c in summary.get("samples", [])][:5]
    path = write_report(run_dir, f"llmlab align {objective}", facts, samples)
    with path.open("a", encoding="utf-8") as f:  # the report is ours; append the second figure
        f.write("\n![objective curves](curves.png)\n")
    return path


def _plot_curves(rows: list[dict[str, Any]], keys: list[str], png: Path) -> None:
    """One panel per metric in `keys` against the iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from llmlab.io import atomic_write

    fig, axes = plt.subplots(1, max(1, len(keys)), figsize=(3.2 * max(1, len(keys)), 3), dpi=110, squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        points = [(r["iter"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([i for i, _ in points], [v for _, v in points], "o-" if key.startswith("val_") else "-", ms=3)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        atomic_write(png, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def describe(summary: dict[str, Any]) -> str:
    """The lines ``llmlab align`` prints at the end of a run."""
    lines = []
    for key, value in summary.items():
        if key.startswith(("final_", "val_", "first_")) and isinstance(value, float):  # metrics, not counts
            lines.append(f"{key}: {value:.4f}")
    saved = summary.get("adapter") or summary.get("model") or summary.get("reward_model")
    lines.append(f"saved: {saved} (resume state: {summary.get('checkpoint')})")
    return "\n".join(lines)
