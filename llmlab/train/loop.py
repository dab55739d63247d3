"""The training loop: gradient accumulation, mixed precision, clipping, evaluation, logging, checkpoints.

One optimizer step ("iteration") with ``grad_accum = A`` micro-batches::

    for each of the A micro-batches:            # DDP/FSDP skip the gradient sync on all but the last
        loss = model(x, y).loss / A             # each micro-batch mean / A  ->  the mean over the whole step
        scaler.scale(loss).backward()           # scaler is a pass-through unless fp16
    scaler.unscale_(opt); clip_grad_norm_(...)  # the reported grad_norm is the norm *before* clipping
    scaler.step(opt); scaler.update(); opt.zero_grad()

Dividing each micro-batch loss by A makes A micro-batches of B sequences produce exactly the gradient of one
batch of A*B sequences (all windows have the same number of tokens), so ``grad_accum`` trades memory for time
without changing the optimisation.

Evaluation: the mean val loss over the first ``eval_iters`` batches of *consecutive* windows of ``val.bin``
(``SequentialLoader``), the same windows every time, so successive val losses are directly comparable and
evaluating draws no random numbers (which keeps resumed runs bit-identical to uninterrupted ones).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from llmlab.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from llmlab.train.config import PretrainConfig
from llmlab.train.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    full_model_state_dict,
    full_optimizer_state_dict,
    load_optimizer_state_dict,
    sync_context,
    wrap_model,
)
from llmlab.train.logging import MetricsLogger, Progress, format_summary, truncate_metrics, write_json_atomic
from llmlab.train.optim import build_optimizer
from llmlab.train.precision import resolve_precision
from llmlab.train.schedule import LRSchedule

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchLoader(Protocol):
    """What the trainer needs from a training loader (e.g. ``llmlab.data.RandomWindowLoader``)."""

    def next_batch(self) -> Batch: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains a language model whose ``forward(x, y)`` returns an object with a ``.loss``.

    Args:
        model: the unwrapped model (a `GPT`, or anything with ``config``, ``save_pretrained`` and that forward),
            already holding the weights to start from (fresh or loaded from a checkpoint). It is moved to
            ``device`` and wrapped for DDP/FSDP here.
        config: the run's `PretrainConfig` (``train``, ``optim``, ``schedule`` sections are used).
        train_loader: gives this rank's micro-batches.
        val_batches: returns a fresh iterable of this rank's val batches for one evaluation (None = no
            evaluation); every rank must get the same number of batches.
        out_dir: the run folder.
        ctx: the distributed context (`init_distributed`).
        device: where to train.
        tokenizer_file: copied into each checkpoint when given.
        resume_state: a loaded ``trainer_state.pt`` to continue from (the model must already hold the
            checkpoint's weights).
    """

    def __init__(
        self,
        model: nn.Module,
        config: PretrainConfig,
        train_loader: BatchLoader,
        val_batches: Callable[[], Iterable[Batch]] | None,
        out_dir: str | Path,
        *,
        ctx: DistContext | None = None,
        device: torch.device | str = "cpu",
        tokenizer_file: str | Path | None = None,
        resume_state: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = config
        self.tc, self.oc = config.train, config.optim
        self.ctx = ctx or DistContext()
        self.device = torch.device(device)
        self.out_dir = Path(out_dir)
        self.train_loader = train_loader
        self.val_batches = val_batches
        self.tokenizer_file = tokenizer_file
        self.precision = resolve_precision(self.tc.precision, self.device)
        if self.ctx.mode == "fsdp" and self.precision.use_scaler:
            raise ValueError("train.precision=fp16 is not supported with FSDP2; use train.precision=bf16")

        self._model_cls = type(model)  # before fully_shard swaps the class
        self.model_config = model.config
        model.to(self.device)
        # raw_model: owns the parameters (FSDP2 shards it in place); dp_model: DDP wrapper or raw_model;
        # model: what we call, torch.compile'd or not.
        self.dp_model = wrap_model(model, self.ctx, self.device)
        self.raw_model = model
        self.model = torch.compile(self.dp_model) if self.tc.compile else self.dp_model
        self.n_params = sum(p.numel() for p in {id(p): p for p in self.raw_model.parameters()}.values())

        self.optimizer, self.group_report = build_optimizer(
            self.raw_model,
            self.oc.name,
            lr=self.oc.lr,
            weight_decay=self.oc.weight_decay,
            betas=tuple(self.oc.betas),
            eps=self.oc.eps,
            extra=dict(self.oc.kwargs),
        )
        sc = config.schedule
        self.schedule = LRSchedule(
            sc.name, self.oc.lr, sc.warmup_iters, sc.min_lr, sc.decay_iters if sc.decay_iters else self.tc.max_iters
        )
        self.scaler = self.precision.make_scaler()

        self.iter = 0
        self.best_val_loss: float | None = None
        self.tokens_seen = 0
        self.train_time = 0.0  # seconds spent in training steps, over all sessions of this run
        seed_everything(self.tc.seed + self.ctx.rank)  # dropout differs across ranks; model init did not
        if resume_state is not None:
            self._load_state(resume_state)

    # ------------------------------------------------------------------ state
    def _load_state(self, state: dict[str, Any]) -> None:
        load_optimizer_state_dict(self.raw_model, self.optimizer, state["optimizer"], self.ctx)
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.train_loader.load_state_dict(state["loader"])
        rngs = state["rng"]
        if len(rngs) != self.ctx.world_size:
            self._say(
                f"note: checkpoint was written by {len(rngs)} processes, now {self.ctx.world_size}: "
                "dropout randomness will not continue exactly"
            )
        set_rng_state(rngs[self.ctx.rank % len(rngs)])
        if state["schedule"] != self.schedule.state_dict():
            self._say(
                f"note: lr schedule changed since the checkpoint: {state['schedule']} -> {self.schedule.state_dict()}"
            )
        self.iter = int(state["iter"])
        self.best_val_loss = state.get("best_val_loss")
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.train_time = float(state.get("train_time", 0.0))

    def trainer_state(self) -> dict[str, Any]:
        """Everything but the weights needed to continue exactly (collective: every rank must call it)."""
        optim_state = full_optimizer_state_dict(self.raw_model, self.optimizer, self.ctx)
        return {
            "iter": self.iter,
            "optimizer": optim_state,
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "loader": self.train_loader.state_dict(),
            "rng": all_gather_objects(rng_state(), self.ctx),
            "best_val_loss": self.best_val_loss,
            "tokens_seen": self.tokens_seen,
            "train_time": self.train_time,
            "world_size": self.ctx.world_size,
        }

    def save(self, name: str = "last") -> Path:
        """Write ``out_dir/checkpoints/<name>`` atomically (collective; only rank 0 writes)."""
        full_sd = full_model_state_dict(self.raw_model, self.ctx) if self.ctx.mode == "fsdp" else None
        state = self.trainer_state()
        path = self.out_dir / "checkpoints" / name
        if self.ctx.is_main:

            def save_model(directory: Path) -> None:
                if full_sd is None:
                    self.raw_model.save_pretrained(directory)
                    return
                with torch.random.fork_rng(devices=[]):  # building a model must not consume training RNG
                    cpu_model = self._model_cls(self.model_config)
                cpu_model.load_state_dict(full_sd)
                cpu_model.save_pretrained(directory)

            save_checkpoint(path, save_model, state, self.tokenizer_file)
        barrier(self.ctx)
        return path

    # ------------------------------------------------------------------ steps
    def _say(self, msg: str) -> None:
        if not self.ctx.is_main:
            return
        bar = getattr(self, "_progress", None)
        if bar is not None and bar.bar is not None:
            bar.write(msg)
        else:
            print(msg, flush=True)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step over ``grad_accum`` micro-batches.

        Returns:
            (loss, grad_norm, tokens): this rank's mean loss over the step (detached), the global gradient
            norm before clipping, and the number of tokens this rank processed.
        """
        lr = self.schedule(self.iter)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum = self.tc.grad_accum
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for micro in range(accum):
            x, y = self.train_loader.next_batch()
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            tokens += x.numel()
            with sync_context(self.dp_model, self.ctx, sync=micro == accum - 1):
                with self.precision.autocast():
                    loss = self.model(x, y).loss / accum  # micro-batch mean / accum -> mean over the step
                self.scaler.scale(loss).backward()
            loss_sum += loss.detach().float()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.oc.grad_clip if self.oc.grad_clip > 0 else float("inf")  # inf: measure, never clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.raw_model.parameters(), max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.iter += 1
        return loss_sum, grad_norm.detach(), tokens

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-weighted mean loss over the val batches, summed over ranks; None without val data.

        Under data parallelism ``val_batches`` yields this rank's rows of each global val batch, so the
        result equals a single process evaluating the whole global batches.
        """
        if self.val_batches is None or self.tc.eval_iters == 0:
            return None
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # (sum of token losses, tokens)
        for x, y in self.val_batches():
            with self.precision.autocast():
                loss = self.model(x.to(self.device), y.to(self.device)).loss.double()
            totals[0] += loss * y.numel()
            totals[1] += y.numel()
        self.model.train()
        totals = all_reduce_sum(totals, self.ctx)
        return float(totals[0] / totals[1]) if totals[1] > 0 else None

    # ------------------------------------------------------------------ loop
    def fit(self) -> dict[str, Any]:
        """Train until ``train.max_iters``; returns (and on rank 0 writes) the run summary."""
        tc = self.tc
        if self.iter >= tc.max_iters:
            raise ValueError(
                f"the checkpoint is already at iteration {self.iter} >= train.max_iters={tc.max_iters}; "
                "raise train.max_iters to train further"
            )
        main = self.ctx.is_main
        start_iter, resumed = self.iter, self.iter > 0
        if main and resumed:
            truncate_metrics(self.out_dir / "metrics.jsonl", start_iter)
        logger = MetricsLogger(self.out_dir, enabled=main, tensorboard=tc.tensorboard, append=resumed)
        self._progress = Progress(tc.max_iters, start_iter, enabled=main and tc.progress)
        self._say(
            f"training {self.n_params:,} parameters on {self.device} ({self.precision.name}, "
            f"{self.ctx.world_size} process{'es' if self.ctx.world_size > 1 else ''}, {self.ctx.mode}); "
            f"{type(self.optimizer).__name__}: {self.group_report}"
            + (f"; resuming at iteration {start_iter}" if resumed else "")
        )
        wall0 = time.perf_counter()
        session_tokens, session_time = 0, 0.0
        window_tokens, window_time = 0, 0.0
        last_loss: float | None = None
        final_val: float | None = None
        self.model.train()
        try:
            while self.iter < tc.max_iters:
                t0 = time.perf_counter()
                loss, grad_norm, tokens = self.train_step()
                tokens *= self.ctx.world_size
                it = self.iter
                last = it == tc.max_iters
                do_eval = self.val_batches is not None and (last or (tc.eval_interval and it % tc.eval_interval == 0))
                do_log = it % tc.log_interval == 0 or it == start_iter + 1 or last or do_eval
                if do_log:  # .item() waits for the device, so time the window only here
                    loss_value = float(all_reduce_mean(loss, self.ctx))
                    if not math.isfinite(loss_value):
                        raise ValueError(
                            f"the loss became {loss_value} at iteration {it}; lower optim.lr, "
                            "enable optim.grad_clip or use train.precision=bf16/fp32"
                        )
                    last_loss = loss_value
                dt = time.perf_counter() - t0
                self.tokens_seen += tokens
                self.train_time += dt
                session_tokens, session_time = session_tokens + tokens, session_time + dt
                window_tokens, window_time = window_tokens + tokens, window_time + dt
                row: dict[str, Any] | None = None
                if do_log:
                    row = {
                        "iter": it,
                        "loss": last_loss,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "grad_norm": float(grad_norm),
                        "tokens_per_sec": window_tokens / max(window_time, 1e-9),
                        "tokens": self.tokens_seen,
                    }
                    window_tokens, window_time = 0, 0.0
                if do_eval:
                    final_val = self.evaluate()
                    if row is not None and final_val is not None:
                        row["val_loss"] = final_val
                    improved = final_val is not None and (self.best_val_loss is None or final_val < self.best_val_loss)
                    if improved:
                        self.best_val_loss = final_val
                        if tc.save_best:
                            self.save("best")
                if row is not None:
                    row["elapsed"] = time.perf_counter() - wall0
                    logger.log(row)
                    msg = f"iter {it}: loss {row['loss']:.4f}, lr {row['lr']:.2e}, grad_norm {row['grad_norm']:.3f}, "
                    msg += f"{row['tokens_per_sec']:,.0f} tok/s"
                    if "val_loss" in row:
                        msg += f", val_loss {row['val_loss']:.4f}"
                    self._say(msg)
                if last or (tc.ckpt_interval and it % tc.ckpt_interval == 0):
                    self.save("last")
                self._progress.update(
                    1,
                    loss=f"{last_loss:.4f}" if last_loss is not None else "-",
                    tok_s=f"{session_tokens / max(session_time, 1e-9):,.0f}",
                )
        finally:
            self._progress.close()
            logger.close()
        summary = {
            "params": self.n_params,
            "iters": self.iter,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val_loss,
            "final_val_loss": final_val,
            "final_train_loss": last_loss,
            "tokens_per_sec": session_tokens / max(session_time, 1e-9),
            "wall_time_s": time.perf_counter() - wall0,
            "precision": self.precision.name,
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            "checkpoint": str(self.out_dir / "checkpoints" / "last"),
            "out_dir": str(self.out_dir),
        }
        if tc.save_best and self.best_val_loss is not None:
            summary["best_checkpoint"] = str(self.out_dir / "checkpoints" / "best")
        if main:
            write_json_atomic(self.out_dir / "summary.json", summary)
            self._say(format_summary(summary))
        return summary
