"""The supervised fine-tuning loop: masked next-token loss, per-task losses, packing, held-out evaluation.

`llmlab.train.loop.Trainer` is built for pretraining (random token windows, whole-model checkpoints); SFT
batches carry more (labels with -100, per-token task ids, packed segments), the loss is averaged over the
*learned* tokens of a step, and the model may be a PEFT model whose output is an adapter, so this is a small
focused loop that reuses the trainer's pieces (`build_optimizer`, `LRSchedule`, `resolve_precision`,
`MetricsLogger`, `Progress`, the atomic `save_checkpoint` + RNG bookkeeping of `llmlab.train.checkpoint`, and
DDP from `llmlab.train.distributed`).

Loss of one optimizer step with `grad_accum = A` micro-batches: every micro-batch contributes
`sum of token losses / learned tokens of the micro-batch / A` (as HF Trainer does by default). Under DDP
(Li et al. 2020, https://arxiv.org/abs/2006.15704) "the micro-batch" is the global one: rank r contributes
`sum of its token losses / learned tokens of all ranks`, scaled by the number of ranks because DDP averages
gradients, so N ranks compute the gradient of one process with the N-times larger batch.

Checkpoints (`checkpoints/last`, every `train.save_interval` steps and at the end) hold only what a resume
needs: `trainable.safetensors` (the trainable parameters under their module names: the adapter for PEFT
methods, the tuned weights for full/partial) and `trainer_state.pt` (optimizer, schedule, iteration, RNG
states of every rank, data-stream position, GradScaler, best val loss; loads with `weights_only=True`).
Restoring all of it makes a resumed run bit-identical to one that never stopped.

Packed rows: the model would let example 2 attend to example 1 of the same row, so packed batches pass the
row's block-diagonal causal mask as a 4-D `attention_mask` (the model ANDs it with its own causal/window
mask), and positions restart per example through `position_ids`.
"""

from __future__ import annotations

import inspect
import itertools
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
from llmlab.models.heads import logits_at
from llmlab.nn.attention import Attention
from llmlab.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from llmlab.train.config import OptimConfig, ScheduleConfig
from llmlab.train.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    barrier,
    full_optimizer_state_dict,
    load_optimizer_state_dict,
    sync_context,
    wrap_model,
)
from llmlab.train.logging import MetricsLogger, Progress, truncate_metrics
from llmlab.train.loop import seed_everything
from llmlab.train.optim import build_optimizer
from llmlab.train.precision import resolve_device, resolve_precision
from llmlab.train.schedule import LRSchedule

TRAINABLE_WEIGHTS = "trainable.safetensors"
SFT_DIST_MODES = ("auto", "none", "ddp")


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
        save_interval: write `out_dir/checkpoints/last` every this many steps (0 = only at the end).
        seed: seeds adapter init, data order and dropout.
        device: auto | cpu | cuda.
        precision: auto | fp32 | bf16 | fp16.
        distributed: auto | none | ddp (under torchrun; auto = DDP with more than one process). Under DDP
            `batch_size` is per process: the global batch is `batch_size * world_size`.
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
    save_interval: int = 0
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    distributed: str = "auto"
    tensorboard: bool = True
    progress: bool = True

    def validate(self) -> None:
        for name in ("batch_size", "grad_accum", "max_iters", "log_interval", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("eval_interval", "max_eval_examples", "save_interval"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.distributed not in SFT_DIST_MODES:
            hint = "; FSDP is not supported for fine-tuning yet" if self.distributed == "fsdp" else ""
            raise ValueError(
                f"unknown train.distributed {self.distributed!r}; choose one of: {', '.join(SFT_DIST_MODES)}{hint}"
            )


# ---------------------------------------------------------------------------------------------- forward
def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _takes_position_ids(model: nn.Module) -> bool:
    return "position_ids" in inspect.signature(_unwrap(model).forward).parameters


def sft_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run `model` on a batch from `llmlab.data.sft.collate_rows`: (B, T, V) logits.

    Packed rows (a segment id above 1) get the block-diagonal mask and, where the model takes them, restarting
    `position_ids`; rows without padding run the plain causal path (no mask tensor). `model` may be wrapped in
    DDP.
    """
    return model(batch["input_ids"], **_forward_kwargs(model, batch)).logits


def sft_token_losses(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, T) cross-entropy of the batch's labels per position (0 where the label is -100).

    Only the positions that carry a loss go through the LM head (`llmlab.models.heads.logits_at`): SFT learns
    from the responses only, often a few percent of the positions, while the (B, T, V) logits of a 49k
    vocabulary are about a fifth of a SmolLM2 training step (benchmarks/finetune.py). The losses are those of
    `token_losses(sft_logits(...))` up to float rounding (tested). `model` may be wrapped in DDP.
    """
    labels = batch["labels"]
    learned = labels != IGNORE_INDEX  # (B, T)
    logits = logits_at(_unwrap(model), learned, batch["input_ids"], call=model, **_forward_kwargs(model, batch))
    losses = torch.zeros(labels.shape, dtype=torch.float32, device=labels.device)  # (B, T)
    losses[learned] = F.cross_entropy(logits.float(), labels[learned], reduction="none")  # (N,) into place
    return losses


def _forward_kwargs(model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, Any]:
    """The forward arguments for an SFT batch besides the ids: masks and positions (see `sft_logits`)."""
    attn = batch["attention_mask"]
    kwargs: dict[str, Any] = {}
    if not bool(attn.all()):
        kwargs["attention_mask"] = attn
    if int(batch["segment_ids"].max()) > 1:
        if any(m.backend == "linear" for m in model.modules() if isinstance(m, Attention)):
            raise ValueError("packing needs a masked attention backend, not linear attention; set data.packing=false")
        if _takes_position_ids(model):
            kwargs["position_ids"] = batch["position_ids"]
        kwargs["attention_mask"] = block_causal_mask(batch["segment_ids"])  # (B, 1, T, T): no cross-example attention
    return kwargs


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


def _sum_over_ranks(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sum of a list of numbers over ranks (float64; identity for a single process)."""
    if not ctx.enabled:
        return values
    return all_reduce_sum(torch.tensor(values, dtype=torch.float64), ctx).tolist()


@torch.no_grad()
def evaluate_sft(
    model: nn.Module,
    batches: Iterable[dict[str, torch.Tensor]],
    n_tasks: int,
    device: torch.device,
    ctx: DistContext | None = None,
) -> tuple[float, list[float]]:
    """Mean token loss over held-out batches, overall and per task (NaN for a task without tokens).

    Under DDP pass every rank the same `batches`: rank r evaluates batches r, r + N, ... and the sums are added
    over ranks, so the result is that of one process evaluating them all.
    """
    ctx = ctx or DistContext()
    was_training = model.training
    model.eval()
    sums, counts = [0.0] * n_tasks, [0] * n_tasks
    for batch in itertools.islice(batches, ctx.rank, None, ctx.world_size):
        batch = _to(batch, device)
        s, c = per_task_sums(sft_token_losses(model, batch), batch, n_tasks)
        sums = [a + b for a, b in zip(sums, s, strict=True)]
        counts = [a + b for a, b in zip(counts, c, strict=True)]
    model.train(was_training)
    reduced = _sum_over_ranks(sums + [float(c) for c in counts], ctx)
    sums, counts = reduced[:n_tasks], [round(c) for c in reduced[n_tasks:]]
    total = sum(counts)
    overall = sum(sums) / total if total else math.nan
    return overall, [s / c if c else math.nan for s, c in zip(sums, counts, strict=True)]


# ---------------------------------------------------------------------------------------------- checkpoints
def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> CPU copy of every trainable parameter (tied parameters once): what a fine-tuning run changes."""
    return {n: p.detach().cpu().contiguous() for n, p in _unwrap(model).named_parameters() if p.requires_grad}


def save_trainable(model: nn.Module, directory: Path) -> None:
    """Write `trainable_state_dict(model)` to `directory/trainable.safetensors`."""
    from safetensors.torch import save_file

    save_file(trainable_state_dict(model), str(Path(directory) / TRAINABLE_WEIGHTS), metadata={"format": "pt"})


def load_trainable(model: nn.Module, ckpt_dir: str | Path) -> None:
    """Copy a checkpoint's trainable parameters into `model` (built as for the run: base + method applied).

    Raises:
        FileNotFoundError: the checkpoint has no `trainable.safetensors`.
        ValueError: the names or shapes differ from the model's trainable parameters (another method/base).
    """
    from safetensors.torch import load_file

    path = Path(ckpt_dir) / TRAINABLE_WEIGHTS
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: not a fine-tuning checkpoint (start a new run without --resume)")
    saved = load_file(str(path))
    params = {n: p for n, p in _unwrap(model).named_parameters() if p.requires_grad}
    missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise ValueError(
            f"the checkpoint's trainable parameters do not match this model ({len(missing)} missing, "
            f"{len(unexpected)} unexpected, e.g. {example}); resume with the same base, method and peft settings"
        )
    with torch.no_grad():
        for name, p in params.items():
            if saved[name].shape != p.shape:
                raise ValueError(
                    f"checkpoint parameter {name} has shape {tuple(saved[name].shape)}, the model {tuple(p.shape)}; "
                    "resume with the same base, method and peft settings"
                )
            p.copy_(saved[name])


# ---------------------------------------------------------------------------------------------- loop
class SFTTrainer:
    """The fine-tuning loop behind `run_sft` (see the module docstring); one instance per run."""

    def __init__(
        self,
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
        ctx: DistContext | None = None,
        checkpoint_dir: Path | None = None,
        resume_state: dict[str, Any] | None = None,
        run_info: dict[str, Any] | None = None,
    ) -> None:
        self.tc, self.oc, self.stream, self.out_dir = tc, oc, stream, Path(out_dir)
        self.task_names, self.n_tasks = task_names, len(task_names)
        self.val_batches, self.extra_eval, self._say = val_batches, extra_eval, say
        self.ctx = ctx or DistContext()
        self.checkpoint_dir, self.run_info = checkpoint_dir, run_info or {}
        self.device = resolve_device(tc.device, self.ctx.local_rank)
        self.precision = resolve_precision(tc.precision, self.device)
        model.to(self.device).train()
        self.model = model
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise ValueError("no parameter is trainable; check method / partial settings")
        self.dp_model = wrap_model(model, self.ctx, self.device)  # DDP all-reduces the gradients
        self.optimizer, _ = build_optimizer(
            model, oc.name, oc.lr, oc.weight_decay, tuple(oc.betas), oc.eps, dict(oc.kwargs)
        )
        warmup = min(sc.warmup_iters, tc.max_iters)  # short runs (smoke tests) keep the default warmup usable
        self.schedule = LRSchedule(sc.name, oc.lr, warmup, sc.min_lr, max(warmup, sc.decay_iters or tc.max_iters))
        self.scaler = self.precision.make_scaler()
        self.iter = 0
        self.best_val: float | None = None
        self.first_loss: float | None = None
        self.tokens_seen, self.train_time = 0, 0.0
        if self.ctx.enabled:
            seed_everything(tc.seed + self.ctx.rank)  # dropout differs across ranks; adapter init did not
        if resume_state is not None:
            self.load_state(resume_state)

    def say(self, msg: str) -> None:
        if self.ctx.is_main:
            bar = getattr(self, "progress", None)
            (bar.write if bar is not None and bar.bar is not None else self._say)(msg)

    # ------------------------------------------------------------------ state
    def trainer_state(self) -> dict[str, Any]:
        """Everything but the weights needed to continue exactly (collective: every rank must call it)."""
        return {
            "iter": self.iter,
            "optimizer": full_optimizer_state_dict(self.model, self.optimizer, self.ctx),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "stream": self.stream.state_dict(),
            "rng": all_gather_objects(rng_state(), self.ctx),
            "best_val_loss": self.best_val,
            "first_train_loss": self.first_loss,
            "tokens_seen": self.tokens_seen,
            "train_time": self.train_time,
            "world_size": self.ctx.world_size,
            "run": self.run_info,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a `trainer_state` (the model must already hold the checkpoint's trainable weights)."""
        load_optimizer_state_dict(self.model, self.optimizer, state["optimizer"], self.ctx)
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.stream.load_state_dict(state["stream"])
        rngs = state["rng"]
        if len(rngs) != self.ctx.world_size:
            self.say(
                f"note: the checkpoint was written by {len(rngs)} process(es), now {self.ctx.world_size}: "
                "dropout randomness will not continue exactly"
            )
        set_rng_state(rngs[self.ctx.rank % len(rngs)])
        if state["schedule"] != self.schedule.state_dict():
            self.say(
                f"note: lr schedule changed since the checkpoint: {state['schedule']} -> {self.schedule.state_dict()}"
            )
        self.iter = int(state["iter"])
        self.best_val, self.first_loss = state.get("best_val_loss"), state.get("first_train_loss")
        self.tokens_seen, self.train_time = int(state["tokens_seen"]), float(state["train_time"])

    def save(self) -> None:
        """Write `checkpoint_dir` atomically (collective; only rank 0 writes)."""
        state = self.trainer_state()
        if self.ctx.is_main and self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, lambda d: save_trainable(self.model, d), state)
        barrier(self.ctx)

    # ------------------------------------------------------------------ steps
    def train_step(self) -> dict[str, Any]:
        """One optimizer step over `grad_accum` micro-batches; returns its (global) loss, per-task sums, ..."""
        tc, ctx, n_tasks = self.tc, self.ctx, self.n_tasks
        lr = self.schedule(self.iter)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        sums, counts = [0.0] * n_tasks, [0] * n_tasks
        step_loss, tokens = 0.0, 0
        for micro in range(tc.grad_accum):
            batch = _to(self.stream.next_batch(), self.device)
            with sync_context(self.dp_model, ctx, sync=micro == tc.grad_accum - 1):
                with self.precision.autocast():
                    losses = sft_token_losses(self.dp_model, batch)  # (B, T)
                n_tok = (batch["labels"] != IGNORE_INDEX).sum()
                n_tok = int(all_reduce_sum(n_tok, ctx))  # learned tokens of the global micro-batch
                loss = losses.sum() / max(1, n_tok)  # this rank's share of the global micro-batch mean
                self.scaler.scale(loss * ctx.world_size / tc.grad_accum).backward()  # DDP averages over ranks
            step_loss += float(loss.detach()) / tc.grad_accum
            s, c = per_task_sums(losses.detach(), batch, n_tasks)
            sums = [a + b for a, b in zip(sums, s, strict=True)]
            counts = [a + b for a, b in zip(counts, c, strict=True)]
            tokens += int(batch["attention_mask"].sum())
        self.scaler.unscale_(self.optimizer)
        clip = self.oc.grad_clip if self.oc.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iter += 1
        if ctx.enabled:  # add up the ranks' shares
            reduced = _sum_over_ranks([step_loss, float(tokens), *sums, *map(float, counts)], ctx)
            step_loss, tokens = reduced[0], round(reduced[1])
            sums, counts = reduced[2 : 2 + n_tasks], [round(c) for c in reduced[2 + n_tasks :]]
        return {"loss": step_loss, "lr": lr, "grad_norm": grad_norm, "sums": sums, "counts": counts, "tokens": tokens}

    def evaluate(self) -> dict[str, float]:
        """Held-out loss (overall and per task, split over ranks) and `extra_eval` metrics (rank 0 only)."""
        row: dict[str, float] = {}
        if self.val_batches is not None:
            overall, per_task = evaluate_sft(self.model, self.val_batches(), self.n_tasks, self.device, self.ctx)
            row["val_loss"] = overall
            if self.n_tasks > 1:
                row.update({f"val_loss_{n}": v for n, v in zip(self.task_names, per_task, strict=True)})
        if self.extra_eval is not None and self.ctx.is_main:
            row.update(self.extra_eval(self.model))
        return row

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train until `max_iters`; returns the summary (on every rank; only rank 0 writes files)."""
        tc, main = self.tc, self.ctx.is_main
        if self.iter >= tc.max_iters:
            raise ValueError(
                f"this run already finished: its checkpoint is at step {self.iter} of train.max_iters="
                f"{tc.max_iters}; raise train.max_iters to train further"
            )
        start = self.iter
        if main and start:
            truncate_metrics(self.out_dir / "metrics.jsonl", start)  # drop rows logged after the checkpoint
        logger = MetricsLogger(self.out_dir, enabled=main, tensorboard=tc.tensorboard, append=start > 0)
        self.progress = Progress(tc.max_iters, start, tc.progress and main)
        if start:
            self.say(f"resuming at step {start} of {tc.max_iters}")
        last_val: dict[str, float] = {}
        last_loss: float | None = None
        session_tokens, session_time = 0, 0.0
        try:
            while self.iter < tc.max_iters:
                t0 = time.perf_counter()
                step = self.train_step()
                it, last = self.iter, self.iter == tc.max_iters
                dt = time.perf_counter() - t0
                self.train_time += dt
                self.tokens_seen += step["tokens"]
                session_tokens, session_time = session_tokens + step["tokens"], session_time + dt
                last_loss = step["loss"]
                if self.first_loss is None:
                    self.first_loss = last_loss
                row: dict[str, Any] = {}
                if it == start + 1 or last or it % tc.log_interval == 0:
                    row = {
                        "iter": it,
                        "loss": last_loss,
                        "lr": step["lr"],
                        "grad_norm": step["grad_norm"],
                        "learned_tokens": sum(step["counts"]),
                        "tokens_per_sec": session_tokens / max(session_time, 1e-9),
                    }
                    if self.n_tasks > 1:
                        row.update(
                            {
                                f"loss_{n}": s / c if c else None
                                for n, s, c in zip(self.task_names, step["sums"], step["counts"], strict=True)
                            }
                        )
                if last or (tc.eval_interval and it % tc.eval_interval == 0):
                    last_val = self.evaluate()
                    row = {"iter": it, "loss": last_loss, "lr": step["lr"], **row, **last_val}
                    msg = ", ".join(f"{k} {x:.4f}" for k, x in last_val.items() if isinstance(x, float))
                    self.say(f"iter {it}: {msg}")
                    v = last_val.get("val_loss")
                    if v is not None and math.isfinite(v):
                        self.best_val = v if self.best_val is None else min(self.best_val, v)
                if row:
                    logger.log(row)
                if self.checkpoint_dir is not None and (last or (tc.save_interval and it % tc.save_interval == 0)):
                    self.save()
                self.progress.update(1, loss=f"{last_loss:.4f}")
        finally:
            self.progress.close()
            logger.close()
        self.model.eval()
        return {
            "iters": self.iter,
            "resumed_from": start or None,
            "first_train_loss": self.first_loss,
            "final_train_loss": last_loss,
            "final_val_loss": last_val.get("val_loss"),
            "best_val_loss": self.best_val,
            **{k: v for k, v in last_val.items() if k != "val_loss"},
            "tokens_seen": self.tokens_seen,
            "tokens_per_sec": session_tokens / max(session_time, 1e-9),
            "wall_time_s": self.train_time,
            "device": str(self.device),
            "precision": self.precision.name,
            "world_size": self.ctx.world_size,
        }


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
    ctx: DistContext | None = None,
    checkpoint_dir: Path | None = None,
    resume_state: dict[str, Any] | None = None,
    run_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune the trainable parameters of `model` for `tc.max_iters` steps; log to `out_dir/metrics.jsonl`.

    Args:
        model: the model with its trainable parameters set (`requires_grad`); with `resume_state`, already
            holding the checkpoint's trainable weights (`load_trainable`).
        stream: gives `next_batch()` dicts and `state_dict()`/`load_state_dict()`
            (`llmlab.data.sft.SFTBatchStream`; under DDP built with this rank and the world size).
        tc: loop settings.
        oc: optimizer settings (`llmlab.train.config.OptimConfig`).
        sc: lr schedule settings.
        out_dir: where `metrics.jsonl` and `tb/` go.
        task_names: names of the tasks (per-task losses are logged as `loss_<name>`, `val_loss_<name>`).
        val_batches: returns the held-out batches for one evaluation (None = no evaluation).
        extra_eval: more held-out metrics (e.g. classification accuracy), logged with the val loss.
        say: where messages go.
        ctx: the distributed context (`llmlab.train.distributed.init_distributed`); None = one process.
        checkpoint_dir: write checkpoints here (every `tc.save_interval` steps and at the end); None = never.
        resume_state: a loaded `trainer_state.pt` to continue from.
        run_info: primitives stored in the checkpoint as `run` (what the run was made from, checked on resume).

    Returns:
        A summary dict (final/best val loss, losses, tokens, wall time, ...).

    Raises:
        ValueError: nothing trainable, a diverging loss, or `resume_state` already at `tc.max_iters`.
    """
    trainer = SFTTrainer(
        model,
        stream,
        tc,
        oc,
        sc,
        out_dir,
        task_names=task_names,
        val_batches=val_batches,
        extra_eval=extra_eval,
        say=say,
        ctx=ctx,
        checkpoint_dir=checkpoint_dir,
        resume_state=resume_state,
        run_info=run_info,
    )
    return trainer.fit()
