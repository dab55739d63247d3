"""The one training loop: state, exact resume, atomic checkpoints, evaluation cadence, logging, progress,
DDP/FSDP2, mixed precision, gradient accumulation, clipping and the lr schedule — for every objective.

An objective (pretraining, supervised fine-tuning, and in `llmlab.align` reward models, DPO, PPO, GRPO) is a
subclass that says only (a) how a batch is drawn, (b) the loss of a batch and (c) what a checkpoint holds::

    class MyTrainer(Trainer):
        def next_batch(self) -> Any: ...                      # (a) this rank's next micro-batch (CPU tensors)
        def batch_loss(self, batch: Any) -> torch.Tensor: ... # (b) mean loss of the micro-batch (runs under
                                                              #     autocast; call `self.model`, the wrapped model)
        def save_weights(self, directory: Path) -> None: ...  # (c) the weights part of a checkpoint folder
        def data_state(self) -> dict: ...                     # where the data stream is (exact resume) ...
        def load_data_state(self, state: dict) -> None: ...   # ... and how to continue from there

    Optional hooks: `loss_units(batch)` (what the loss averages over, e.g. learned tokens; default 1 per
    micro-batch), `batch_tokens(batch)` (tokens processed, for tokens/s), `evaluate()` (held-out metrics; a
    ``val_loss`` key drives ``best_val_loss`` and ``train.save_best``), `step_metrics()` (extra log fields of the
    step, a collective), `describe_row(row)` (the line printed for a log row), `summary()` (end-of-run facts),
    `save_ema_weights(directory, shadow)` (the EMA weights; the default swaps them in and calls `save_weights`).

DPO, for example, draws (chosen, rejected) pairs in `next_batch`, returns ``-logsigmoid(beta * margin).mean()``
from `batch_loss` (with a frozen reference model held by the subclass) and saves the policy's trainable
weights; PPO/GRPO fill a rollout buffer in `next_batch`. The trainer does the rest identically for all.

One optimizer step with ``train.grad_accum = A`` micro-batches on N ranks::

    draw the A micro-batches; units_i = loss_units(batch_i); U = sum of units over the step and all ranks
    for each micro-batch i:                        # DDP/FSDP skip the gradient sync on all but the last
        loss_i = batch_loss(batch_i)               # the micro-batch mean
        backward(loss_i / (U / (units_i * N)))     # its share of the step's mean (DDP averages over ranks)
    unscale (fp16); clip_grad_norm_ (grad_norm logged before clipping); optimizer step; zero_grad

so a step is the gradient of the mean over all units of the step, whatever the split into micro-batches and
ranks (for token losses: the token-mean, as in transformers' Trainer since v4.46). With equal micro-batches
(pretraining: one unit per micro-batch) the share is exactly ``loss / A``.

Checkpoints: ``out_dir/checkpoints/last`` every ``train.save_interval`` steps and at the end (``best`` with
``train.save_best``), written by `llmlab.train.checkpoint.save_checkpoint`: the subclass's weights plus
``trainer_state.pt`` (optimizer, schedule, iteration, every rank's RNG state, data position, GradScaler, best
val loss, what the run was made from). Restoring it makes a resumed run bit-identical to one that never stopped.
With ``train.ema_decay > 0`` an fp32 EMA of the trainable weights (`llmlab.train.ema.EMA`) is updated after each
step, kept in ``trainer_state.pt`` (exact resume) and written as loadable weights in ``checkpoints/<name>/ema/``
(by `save_ema_weights`: by default `save_weights` with the EMA values swapped in, so in the checkpoint's format).
Evaluation must draw no random numbers from the global generators (or restore them), for the same reason.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.train.checkpoint import rng_state, save_checkpoint, set_rng_state
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    all_reduce_sum,
    barrier,
    full_optimizer_state_dict,
    load_optimizer_state_dict,
    sync_context,
    wrap_model,
)
from llmlab.train.ema import EMA
from llmlab.train.logging import MetricsLogger, Progress, truncate_metrics
from llmlab.train.optim import build_optimizer
from llmlab.train.precision import check_runtime, rank_device
from llmlab.train.schedule import LRSchedule


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    """`batch` (a tensor, or a tuple/list/dict of them) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Trainer:
    """The base training loop (see the module docstring for the hooks a subclass implements).

    ``fit_warmup_to_run`` (class attribute): shorten ``schedule.warmup_iters`` to ``train.max_iters`` (and the
    decay to at least the warmup), so that a short run with a default warmup still reaches the peak lr
    (fine-tuning); False uses the schedule exactly as configured (pretraining).

    Args:
        model: the unwrapped model with its trainable parameters set (``requires_grad``), already holding the
            weights to start from. It is moved to the device and wrapped for DDP/FSDP here.
        train / optim / schedule: the run's ``train``, ``optim`` and ``schedule`` config sections.
        out_dir: the run folder (``metrics.jsonl``, ``tb/``, ``checkpoints/``).
        ctx: the distributed context (`llmlab.train.distributed.init_distributed`); None = one process.
        device: where to train (None = ``train.device`` for this rank).
        resume_state: a loaded ``trainer_state.pt`` to continue from (the model must already hold its weights).
        run_info: JSON primitives saved as ``run`` in every checkpoint (what the run was made from).
        save_checkpoints: write ``checkpoints/`` (False for throw-away runs such as peft-compare).
        say: where messages go (rank 0 only).
    """

    fit_warmup_to_run = False

    def __init__(
        self,
        model: nn.Module,
        train: TrainConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        out_dir: str | Path,
        *,
        ctx: DistContext | None = None,
        device: torch.device | str | None = None,
        resume_state: dict[str, Any] | None = None,
        run_info: dict[str, Any] | None = None,
        save_checkpoints: bool = True,
        say: Callable[[str], None] = print,
    ) -> None:
        self.tc, self.oc = train, optim
        self.ctx = ctx or DistContext()
        self.out_dir = Path(out_dir)
        self.run_info, self.save_checkpoints, self._print = run_info or {}, save_checkpoints, say
        self.device = torch.device(device) if device is not None else rank_device(train.device, self.ctx.local_rank)
        _, self.precision = check_runtime(str(self.device), train.precision, self.ctx.mode)
        self.raw_model = model  # owns the parameters (FSDP2 shards it in place)
        self.model_class, self.model_config = type(model), getattr(model, "config", None)  # before fully_shard
        self.tokenizer_file: Path | None = None  # copied into each checkpoint when set
        model.to(self.device).train()
        if not any(p.requires_grad for p in model.parameters()):
            raise ValueError("no parameter is trainable; check method / partial settings")
        self.dp_model = wrap_model(model, self.ctx, self.device)  # DDP wrapper or the model itself
        self.params = [p for p in model.parameters() if p.requires_grad]  # after FSDP2 swapped them for shards
        trainable = ((n, p) for n, p in model.named_parameters() if p.requires_grad)
        self.ema = EMA(trainable, train.ema_decay) if train.ema_decay > 0 else None
        if self.ema is not None and self.ctx.mode == "fsdp" and type(self).save_ema_weights is Trainer.save_ema_weights:
            raise ValueError(f"train.ema_decay is not supported with FSDP for {type(self).__name__}; use DDP")
        self.n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        self.model = torch.compile(self.dp_model) if train.compile else self.dp_model  # what batch_loss calls
        self.optimizer, self.group_report = build_optimizer(
            model, optim.name, optim.lr, optim.weight_decay, tuple(optim.betas), optim.eps, dict(optim.kwargs)
        )
        warmup, decay = schedule.warmup_iters, schedule.decay_iters or train.max_iters
        if self.fit_warmup_to_run:
            warmup = min(warmup, train.max_iters)
            decay = max(warmup, decay)
        self.schedule = LRSchedule(schedule.name, optim.lr, warmup, schedule.min_lr, decay)
        self.scaler = self.precision.make_scaler()
        self.iter, self.tokens_seen, self.train_time = 0, 0, 0.0
        self.best_val_loss: float | None = None
        self.first_loss: float | None = None
        self.progress: Progress | None = None
        self._gathered: Any = None  # what `gather_weights` returned, for `save_weights` on rank 0
        seed_everything(train.seed + self.ctx.rank)  # dropout differs across ranks; model init did not
        if resume_state is not None:
            self.load_state(resume_state)

    # ------------------------------------------------------------------ hooks (see the module docstring)
    def next_batch(self) -> Any:
        raise NotImplementedError

    def batch_loss(self, batch: Any) -> torch.Tensor:
        raise NotImplementedError

    def save_weights(self, directory: Path) -> None:
        raise NotImplementedError

    def data_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_data_state(self, state: dict[str, Any]) -> None:
        raise NotImplementedError

    def save_ema_weights(self, directory: Path, shadow: dict[str, torch.Tensor]) -> None:
        """Write the EMA weights (`shadow`: full fp32 CPU tensors by name) into `directory`, loadable like the
        weights `save_weights` writes (rank 0). Default: `save_weights` with the EMA values swapped in."""
        assert self.ema is not None
        with self.ema.applied():
            self.save_weights(directory)

    def loss_units(self, batch: Any) -> int:
        """What `batch_loss` averages over (default: every micro-batch weighs the same)."""
        return 1

    def batch_tokens(self, batch: Any) -> int:
        """Tokens processed for this batch (for tokens/s); default 0."""
        return 0

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics (collective: every rank calls it); empty = no evaluation."""
        return {}

    @property
    def can_evaluate(self) -> bool:
        return False

    def step_metrics(self) -> dict[str, Any]:
        """Extra fields for the log row of the step just taken (collective: called on every rank, every step)."""
        return {}

    def describe_row(self, row: dict[str, Any]) -> str | None:
        """The line printed for a log row (None = print nothing)."""
        msg = f"iter {row['iter']}: loss {row['loss']:.4f}, lr {row['lr']:.2e}, grad_norm {row['grad_norm']:.3f}"
        msg += f", {row['tokens_per_sec']:,.0f} tok/s"
        return msg + (f", val_loss {row['val_loss']:.4f}" if row.get("val_loss") is not None else "")

    def start_message(self, start: int) -> str | None:
        """The line printed when training starts (or resumes at `start`)."""
        return f"resuming at step {start} of {self.tc.max_iters}" if start else None

    def summary(self) -> dict[str, Any]:
        """Facts of the finished run (the base gives the common ones; subclasses add theirs)."""
        return {}

    # ------------------------------------------------------------------ state
    def trainer_state(self) -> dict[str, Any]:
        """Everything but the weights needed to continue exactly (collective: every rank must call it)."""
        return {
            "iter": self.iter,
            "optimizer": full_optimizer_state_dict(self.raw_model, self.optimizer, self.ctx),
            "schedule": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else {},
            "data": self.data_state(),
            "rng": all_gather_objects(rng_state(), self.ctx),
            "best_val_loss": self.best_val_loss,
            "first_train_loss": self.first_loss,
            "tokens_seen": self.tokens_seen,
            "train_time": self.train_time,
            "world_size": self.ctx.world_size,
            "run": self.run_info,
            **({"ema": self.ema.state_dict()} if self.ema is not None else {}),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore a `trainer_state` (the model must already hold the checkpoint's weights)."""
        load_optimizer_state_dict(self.raw_model, self.optimizer, state["optimizer"], self.ctx)
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.load_data_state(state["data"])
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
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])
        elif self.ema is not None:
            self.say("note: the checkpoint has no EMA weights; the EMA starts from the resumed weights")
        self.iter = int(state["iter"])
        self.best_val_loss, self.first_loss = state.get("best_val_loss"), state.get("first_train_loss")
        self.tokens_seen, self.train_time = int(state.get("tokens_seen", 0)), float(state.get("train_time", 0.0))

    def gather_weights(self) -> Any:
        """Collective run on every rank before rank 0 saves (e.g. FSDP's full state dict); default nothing."""
        return None

    def save(self, name: str = "last") -> Path:
        """Write ``out_dir/checkpoints/<name>`` atomically (collective; only rank 0 writes)."""
        self._gathered = self.gather_weights()
        state = self.trainer_state()
        path = self.out_dir / "checkpoints" / name
        if self.ctx.is_main:
            save_checkpoint(path, lambda folder: self._write_weights(folder, state), state, self.tokenizer_file)
        self._gathered = None
        barrier(self.ctx)
        return path

    def _write_weights(self, folder: Path, state: dict[str, Any]) -> None:
        """The weights of a checkpoint folder, and with an EMA its ``ema/`` subfolder (with the tokenizer)."""
        self.save_weights(folder)
        if "ema" in state:
            (folder / "ema").mkdir()
            self.save_ema_weights(folder / "ema", state["ema"]["shadow"])
            if self.tokenizer_file is not None and self.tokenizer_file.is_file():
                shutil.copyfile(self.tokenizer_file, folder / "ema" / "tokenizer.json")

    def say(self, msg: str) -> None:
        """Print on rank 0 without breaking the progress bar."""
        if not self.ctx.is_main:
            return
        bar = self.progress
        (bar.write if bar is not None and bar.bar is not None else self._print)(msg)

    # ------------------------------------------------------------------ one step
    def train_step(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """One optimizer step over ``grad_accum`` micro-batches (see the module docstring).

        Returns:
            (loss, grad_norm, tokens): this rank's share of the step's mean loss (detached; the mean over ranks
            is the step's loss), the global gradient norm before clipping, and the tokens of all ranks.
        """
        lr = self.schedule(self.iter)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        accum, world = self.tc.grad_accum, self.ctx.world_size
        batches = [self.next_batch() for _ in range(accum)]
        units = [int(self.loss_units(b)) for b in batches]
        step_units, tokens = sum(units), sum(int(self.batch_tokens(b)) for b in batches)
        if self.ctx.enabled:  # one small all-reduce: the step's units and tokens over all ranks
            counts = torch.tensor([step_units, tokens], dtype=torch.float64, device=self.device)
            step_units, tokens = (int(c) for c in all_reduce_sum(counts, self.ctx).tolist())
        loss_sum = torch.zeros((), device=self.device)
        for micro, (batch, n) in enumerate(zip(batches, units, strict=True)):
            batch = to_device(batch, self.device)
            with sync_context(self.dp_model, self.ctx, sync=micro == accum - 1):
                with self.precision.autocast():
                    loss = self.batch_loss(batch)
                share = loss / (step_units / (n * world)) if n else loss * 0.0  # share of the step's mean
                self.scaler.scale(share).backward()
            loss_sum += share.detach().float()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.oc.grad_clip if self.oc.grad_clip > 0 else float("inf")  # inf: measure, never clip
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        self.iter += 1
        return loss_sum, grad_norm.detach(), tokens

    def _evaluate(self, row: dict[str, Any]) -> None:
        """Run `evaluate` into `row`; track the best val loss (and save ``best`` with ``train.save_best``)."""
        metrics = self.evaluate()
        row.update(metrics)
        val = metrics.get("val_loss")
        if val is not None and math.isfinite(val) and (self.best_val_loss is None or val < self.best_val_loss):
            self.best_val_loss = val
            if self.tc.save_best and self.save_checkpoints:
                self.save("best")

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, Any]:
        """Train until ``train.max_iters``; returns the summary (on every rank; only rank 0 writes files)."""
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
        self.progress = Progress(tc.max_iters, start, enabled=main and tc.progress)
        message = self.start_message(start)
        if message:
            self.say(message)
        wall0 = time.perf_counter()
        session_tokens, session_time, window_tokens, window_time = 0, 0.0, 0, 0.0
        last_loss: float | None = None
        last_eval: dict[str, Any] = {}
        self.model.train()
        try:
            while self.iter < tc.max_iters:
                t0 = time.perf_counter()
                loss, grad_norm, tokens = self.train_step()
                extra = self.step_metrics()
                it, last = self.iter, self.iter == tc.max_iters
                do_eval = self.can_evaluate and (last or (tc.eval_interval and it % tc.eval_interval == 0))
                do_log = it % tc.log_interval == 0 or it == start + 1 or last or do_eval
                if do_log:  # .item() waits for the device, so time the window only here
                    last_loss = float(all_reduce_mean(loss, self.ctx))
                    if not math.isfinite(last_loss):
                        raise ValueError(
                            f"the loss became {last_loss} at iteration {it}; lower optim.lr, "
                            "enable optim.grad_clip or use train.precision=bf16/fp32"
                        )
                    if self.first_loss is None:
                        self.first_loss = last_loss
                dt = time.perf_counter() - t0
                self.tokens_seen, self.train_time = self.tokens_seen + tokens, self.train_time + dt
                session_tokens, session_time = session_tokens + tokens, session_time + dt
                window_tokens, window_time = window_tokens + tokens, window_time + dt
                if do_log:
                    row: dict[str, Any] = {
                        "iter": it,
                        "loss": last_loss,
                        "lr": self.optimizer.param_groups[0]["lr"],
                        "grad_norm": float(grad_norm),
                        **extra,
                        "tokens_per_sec": window_tokens / max(window_time, 1e-9),
                        "tokens": self.tokens_seen,
                    }
                    window_tokens, window_time = 0, 0.0
                    if do_eval:
                        self._evaluate(row)
                        last_eval = {k: v for k, v in row.items() if k.startswith("val_")}
                    row["elapsed"] = time.perf_counter() - wall0
                    logger.log(row)
                    message = self.describe_row(row)
                    if message:
                        self.say(message)
                if self.save_checkpoints and (last or (tc.save_interval and it % tc.save_interval == 0)):
                    self.save("last")
                self.progress.update(
                    1,
                    loss=f"{last_loss:.4f}" if last_loss is not None else "-",
                    tok_s=f"{session_tokens / max(session_time, 1e-9):,.0f}",
                )
        finally:
            self.progress.close()
            logger.close()
        self.model.eval()
        return {
            "params": self.n_params,
            "iters": self.iter,
            "resumed_from": start or None,
            "tokens_seen": self.tokens_seen,
            "best_val_loss": self.best_val_loss,
            "final_val_loss": last_eval.get("val_loss"),
            **{k: v for k, v in last_eval.items() if k != "val_loss"},
            "first_train_loss": self.first_loss,
            "final_train_loss": last_loss,
            "tokens_per_sec": session_tokens / max(session_time, 1e-9),
            "wall_time_s": time.perf_counter() - wall0,
            "train_time_s": self.train_time,
            "precision": self.precision.name,
            "device": str(self.device),
            "world_size": self.ctx.world_size,
            **self.summary(),
        }
