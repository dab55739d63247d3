"""The supervised fine-tuning loop: masked next-token loss, per-task losses, packing, held-out evaluation.

`llmlab.train.loop.Trainer` is built for pretraining (random token windows, full checkpoints, resume); SFT
batches carry more (labels with -100, per-token task ids, packed segments), the loss is averaged over the
*learned* tokens of a step, and the model may be a PEFT model whose output is an adapter, so this is a small
focused loop that reuses the trainer's pieces (`build_optimizer`, `LRSchedule`, `resolve_precision`,
`MetricsLogger`, `Progress`).

Loss of one optimizer step with `grad_accum = A` micro-batches: every micro-batch contributes
`sum of token losses / tokens of the micro-batch / A` (as HF Trainer does by default).

Packed rows: the model would let example 2 attend to example 1 of the same row, so packed batches pass the
row's block-diagonal causal mask as a 4-D `attention_mask` (the model ANDs it with its own causal/window
mask), and positions restart per example through `position_ids`.
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.data.sft import IGNORE_INDEX, block_causal_mask
from llmlab.nn.attention import Attention
from llmlab.train.config import OptimConfig, ScheduleConfig
from llmlab.train.logging import MetricsLogger, Progress
from llmlab.train.optim import build_optimizer
from llmlab.train.precision import resolve_device, resolve_precision
from llmlab.train.schedule import LRSchedule


@dataclass
class SFTTrainConfig:
    """The fine-tuning loop.

    Attributes:
        batch_size: rows per micro-batch (with packing, each row holds several examples).
        grad_accum: micro-batches per optimizer step.
        max_iters: optimizer steps.
        eval_interval: evaluate on the held-out split every this many steps (0 = only at the end).
        eval_batch_size: rows per evaluation batch.
        max_eval_examples: evaluate on at most this many held-out examples per task (0 = all).
        log_interval: write a metrics row every this many steps (and at the first and last).
        seed: seeds adapter init, data order and dropout.
        device: auto | cpu | cuda.
        precision: auto | fp32 | bf16 | fp16.
        tensorboard: write TensorBoard event files to `out_dir/tb`.
        progress: show a progress bar.
    """

    batch_size: int = 8
    grad_accum: int = 1
    max_iters: int = 200
    eval_interval: int = 50
    eval_batch_size: int = 8
    max_eval_examples: int = 200
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    tensorboard: bool = True
    progress: bool = True

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum", "max_iters", "log_interval", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_interval", "max_eval_examples"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")


# ---------------------------------------------------------------------------------------------- forward
def _takes_position_ids(model: nn.Module) -> bool:
    return "position_ids" in inspect.signature(model.forward).parameters


def sft_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run `model` on a batch from `llmlab.data.sft.collate_rows`: (B, T, V) logits.

    Packed rows (a segment id above 1) get the block-diagonal mask and, where the model takes them, restarting
    `position_ids`; rows without padding run the plain causal path (no mask tensor).
    """
    ids, attn = batch["input_ids"], batch["attention_mask"]
    kwargs: dict[str, Any] = {}
    if not bool(attn.all()):
        kwargs["attention_mask"] = attn
    if int(batch["segment_ids"].max()) > 1:
        if any(m.backend == "linear" for m in model.modules() if isinstance(m, Attention)):
            raise ValueError("packing needs a masked attention backend, not linear attention; set data.packing=false")
        if _takes_position_ids(model):
            kwargs["position_ids"] = batch["position_ids"]
        kwargs["attention_mask"] = block_causal_mask(batch["segment_ids"])  # (B, 1, T, T): no cross-example attention
    return model(ids, **kwargs).logits


def token_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B, T, V) logits, (B, T) labels -> (B, T) cross-entropy per position (0 where the label is -100)."""
    b, t, v = logits.shape
    return F.cross_entropy(
        logits.float().reshape(b * t, v), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="none"
    ).view(b, t)


def per_task_sums(losses: torch.Tensor, batch: dict[str, torch.Tensor], n_tasks: int) -> tuple[list[float], list[int]]:
    """Sum of token losses and number of learned tokens per task in a batch."""
    learned = batch["labels"] != IGNORE_INDEX
    sums, counts = [], []
    for k in range(n_tasks):
        sel = learned & (batch["task_ids"] == k)
        sums.append(float(losses[sel].sum()))
        counts.append(int(sel.sum()))
    return sums, counts


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def evaluate_sft(
    model: nn.Module, batches: Iterable[dict[str, torch.Tensor]], n_tasks: int, device: torch.device
) -> tuple[float, list[float]]:
    """Mean token loss over held-out batches, overall and per task (NaN for a task without tokens)."""
    was_training = model.training
    model.eval()
    sums, counts = [0.0] * n_tasks, [0] * n_tasks
    for batch in batches:
        batch = _to(batch, device)
        s, c = per_task_sums(token_losses(sft_logits(model, batch), batch["labels"]), batch, n_tasks)
        sums = [a + b for a, b in zip(sums, s, strict=True)]
        counts = [a + b for a, b in zip(counts, c, strict=True)]
    model.train(was_training)
    total = sum(counts)
    overall = sum(sums) / total if total else math.nan
    return overall, [s / c if c else math.nan for s, c in zip(sums, counts, strict=True)]


# ---------------------------------------------------------------------------------------------- loop
def run_sft(
    model: nn.Module,
    stream: Any,
    tc: SFTTrainConfig,
    oc: OptimConfig,
    sc: ScheduleConfig,
    out_dir: Path,
    *,
    task_names: list[str],
    val_batches: Callable[[], Iterable[dict[str, torch.Tensor]]] | None = None,
    extra_eval: Callable[[nn.Module], dict[str, float]] | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fine-tune the trainable parameters of `model` for `tc.max_iters` steps; log to `out_dir/metrics.jsonl`.

    Args:
        model: the model with its trainable parameters set (`requires_grad`).
        stream: gives `next_batch()` dicts (`llmlab.data.sft.SFTBatchStream`).
        tc: loop settings.
        oc: optimizer settings (`llmlab.train.config.OptimConfig`).
        sc: lr schedule settings.
        out_dir: where `metrics.jsonl` and `tb/` go.
        task_names: names of the tasks (per-task losses are logged as `loss_<name>`, `val_loss_<name>`).
        val_batches: returns the held-out batches for one evaluation (None = no evaluation).
        extra_eval: more held-out metrics (e.g. classification accuracy), logged with the val loss.
        say: where messages go.

    Returns:
        A summary dict (final/best val loss, losses, tokens, wall time, ...).
    """
    device = resolve_device(tc.device)
    precision = resolve_precision(tc.precision, device)
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("no parameter is trainable; check method / partial settings")
    optimizer, _ = build_optimizer(model, oc.name, oc.lr, oc.weight_decay, tuple(oc.betas), oc.eps, dict(oc.kwargs))
    warmup = min(sc.warmup_iters, tc.max_iters)  # short runs (smoke tests) keep the default warmup usable
    schedule = LRSchedule(sc.name, oc.lr, warmup, sc.min_lr, max(warmup, sc.decay_iters or tc.max_iters))
    scaler = precision.make_scaler()
    logger = MetricsLogger(out_dir, tensorboard=tc.tensorboard)
    progress = Progress(tc.max_iters, 0, tc.progress)
    n_tasks = len(task_names)
    history: list[dict[str, Any]] = []
    best_val: float | None = None
    last_val: dict[str, float] = {}
    tokens_seen, t_train = 0, 0.0

    def run_eval(it: int) -> dict[str, float]:
        row: dict[str, float] = {}
        if val_batches is not None:
            overall, per_task = evaluate_sft(model, val_batches(), n_tasks, device)
            row["val_loss"] = overall
            if n_tasks > 1:
                row.update({f"val_loss_{n}": v for n, v in zip(task_names, per_task, strict=True)})
        if extra_eval is not None:
            row.update(extra_eval(model))
        return row

    try:
        for it in range(tc.max_iters):
            t0 = time.perf_counter()
            lr = schedule(it)
            for g in optimizer.param_groups:
                g["lr"] = lr
            sums, counts = [0.0] * n_tasks, [0] * n_tasks
            step_loss = 0.0
            for _ in range(tc.grad_accum):
                batch = _to(stream.next_batch(), device)
                with precision.autocast():
                    losses = token_losses(sft_logits(model, batch), batch["labels"])
                n_tok = int((batch["labels"] != IGNORE_INDEX).sum())
                loss = losses.sum() / max(1, n_tok)
                scaler.scale(loss / tc.grad_accum).backward()
                step_loss += float(loss.detach()) / tc.grad_accum
                s, c = per_task_sums(losses.detach(), batch, n_tasks)
                sums = [a + b for a, b in zip(sums, s, strict=True)]
                counts = [a + b for a, b in zip(counts, c, strict=True)]
                tokens_seen += int(batch["attention_mask"].sum())
            scaler.unscale_(optimizer)
            clip = oc.grad_clip if oc.grad_clip > 0 else float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, clip))
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            dt = time.perf_counter() - t0
            t_train += dt
            last = it == tc.max_iters - 1
            row: dict[str, Any] = {}
            if it == 0 or last or (it + 1) % tc.log_interval == 0:
                row = {
                    "iter": it + 1,
                    "loss": step_loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "learned_tokens": sum(counts),
                    "tokens_per_sec": tokens_seen / max(t_train, 1e-9),
                }
                if n_tasks > 1:
                    row.update(
                        {f"loss_{n}": s / c if c else None for n, s, c in zip(task_names, sums, counts, strict=True)}
                    )
            if last or (tc.eval_interval and (it + 1) % tc.eval_interval == 0):
                last_val = run_eval(it + 1)
                row = {"iter": it + 1, "loss": step_loss, "lr": lr, **row, **last_val}
                v = last_val.get("val_loss")
                msg = ", ".join(f"{k} {x:.4f}" for k, x in last_val.items() if isinstance(x, float))
                (progress.write if progress.bar is not None else say)(f"iter {it + 1}: {msg}")
                if v is not None and math.isfinite(v):
                    best_val = v if best_val is None else min(best_val, v)
            if row:
                logger.log(row)
                history.append(row)
            progress.update(1, loss=f"{step_loss:.4f}")
    finally:
        progress.close()
        logger.close()
    model.eval()
    first = history[0]["loss"] if history else None
    return {
        "iters": tc.max_iters,
        "first_train_loss": first,
        "final_train_loss": history[-1]["loss"] if history else None,
        "final_val_loss": last_val.get("val_loss"),
        "best_val_loss": best_val,
        **{k: v for k, v in last_val.items() if k != "val_loss"},
        "tokens_seen": tokens_seen,
        "tokens_per_sec": tokens_seen / max(t_train, 1e-9),
        "wall_time_s": t_train,
        "device": str(device),
        "precision": precision.name,
    }
