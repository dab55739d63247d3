"""Supervised fine-tuning as a specialisation of the one `Trainer` (`llmlab.train.trainer`): masked next-token
loss, per-task losses, packing, held-out evaluation, checkpoints of the trainable parameters only.

(a) Batches come from `llmlab.data.sft.SFTBatchStream` (labels -100 where nothing is learned, per-token task ids,
packed segments). (b) The loss of a micro-batch is the mean over its *learned* tokens, and `loss_units` is their
count, so the trainer weighs every micro-batch by it: a step with ``grad_accum = A`` micro-batches on N ranks
(Li et al. 2020, https://arxiv.org/abs/2006.15704) is the token-mean over all learned tokens of the step, the
gradient of one process with the whole global batch. (c) Checkpoints (`checkpoints/last`, every
`train.save_interval` steps and at the end) hold `trainable.safetensors` (the trainable parameters under their
module names: the adapter for PEFT methods, the tuned weights for full/partial) and `trainer_state.pt`.

Packed rows: the model would let example 2 attend to example 1 of the same row, so packed batches pass the
row's block-diagonal causal mask as a 4-D `attention_mask` (the model ANDs it with its own causal/window
mask), and positions restart per example through `position_ids`.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.data.sft import IGNORE_INDEX, block_causal_mask
from llmlab.models.heads import logits_at
from llmlab.nn.attention import Attention
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.distributed import DistContext, all_reduce_sum
from llmlab.train.trainer import Trainer, to_device

TRAINABLE_WEIGHTS = "trainable.safetensors"


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
        batch = to_device(batch, device)
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
class StreamTrainer(Trainer):
    """A `Trainer` whose checkpoint is the trainable parameters (`save_trainable`) plus the position of one batch
    stream, `self.stream` (`state_dict` / `load_state_dict`): SFT, reward models, seq2seq and task heads."""

    stream: Any

    def save_weights(self, directory: Path) -> None:
        save_trainable(self.raw_model, directory)

    def data_state(self) -> dict[str, Any]:
        return self.stream.state_dict()

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state)


class SFTTrainer(StreamTrainer):
    """Fine-tunes the trainable parameters of a model on `SFTBatchStream` batches (see the module docstring).

    Args:
        model: the model with its trainable parameters set; with `resume_state`, already holding the
            checkpoint's trainable weights (`load_trainable`).
        stream: gives `next_batch()` dicts and `state_dict()`/`load_state_dict()` (under DDP built with this
            rank and the world size).
        train / optim / schedule: the config sections.
        out_dir: where `metrics.jsonl`, `tb/` and `checkpoints/` go.
        task_names: names of the tasks (per-task losses are logged as `loss_<name>`, `val_loss_<name>`).
        val_batches: returns the held-out batches for one evaluation (None = no evaluation).
        extra_eval: more held-out metrics (e.g. classification accuracy), logged with the val loss (rank 0).
        **kwargs: `Trainer`'s keyword arguments (ctx, device, resume_state, run_info, save_checkpoints, say).
    """

    fit_warmup_to_run = True  # short runs (smoke tests) keep the default warmup usable

    def __init__(
        self,
        model: nn.Module,
        stream: Any,
        train: TrainConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        out_dir: str | Path,
        *,
        task_names: list[str],
        val_batches: Callable[[], Iterable[dict[str, torch.Tensor]]] | None = None,
        extra_eval: Callable[[nn.Module], dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        self.stream, self.task_names, self.n_tasks = stream, task_names, len(task_names)
        self.val_batches, self.extra_eval = val_batches, extra_eval
        self._sums, self._counts = [0.0] * self.n_tasks, [0] * self.n_tasks  # per task, this step, this rank
        super().__init__(model, train, optim, schedule, out_dir, **kwargs)

    # (a) a batch: this rank's rows of the example stream
    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.stream.next_batch()

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["labels"] != IGNORE_INDEX).sum())

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    # (b) its loss: the mean over the learned tokens (per-task sums kept for the log)
    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        losses = sft_token_losses(self.dp_model, batch)  # (B, T)
        sums, counts = per_task_sums(losses.detach(), batch, self.n_tasks)
        self._sums = [a + b for a, b in zip(self._sums, sums, strict=True)]
        self._counts = [a + b for a, b in zip(self._counts, counts, strict=True)]
        return losses.sum() / max(1, self.loss_units(batch))

    # logging, evaluation, summary
    def step_metrics(self) -> dict[str, Any]:
        """Learned tokens of the step and, with several tasks, each task's mean loss (summed over ranks)."""
        reduced = _sum_over_ranks([*self._sums, *map(float, self._counts)], self.ctx)
        sums, counts = reduced[: self.n_tasks], [round(c) for c in reduced[self.n_tasks :]]
        self._sums, self._counts = [0.0] * self.n_tasks, [0] * self.n_tasks
        row: dict[str, Any] = {"learned_tokens": sum(counts)}
        if self.n_tasks > 1:
            row.update(
                {f"loss_{n}": s / c if c else None for n, s, c in zip(self.task_names, sums, counts, strict=True)}
            )
        return row

    @property
    def can_evaluate(self) -> bool:
        return self.val_batches is not None or self.extra_eval is not None

    def evaluate(self) -> dict[str, float]:
        """Held-out loss (overall and per task, split over ranks) and `extra_eval` metrics (rank 0 only)."""
        row: dict[str, float] = {}
        if self.val_batches is not None:
            overall, per_task = evaluate_sft(self.raw_model, self.val_batches(), self.n_tasks, self.device, self.ctx)
            row["val_loss"] = overall
            if self.n_tasks > 1:
                row.update({f"val_loss_{n}": v for n, v in zip(self.task_names, per_task, strict=True)})
        if self.extra_eval is not None and self.ctx.is_main:
            row.update(self.extra_eval(self.raw_model))
        return row

    def describe_row(self, row: dict[str, Any]) -> str | None:
        """Only evaluations are printed (the per-step losses are in metrics.jsonl and the progress bar)."""
        evals = {k: v for k, v in row.items() if k.startswith("val_") and isinstance(v, float)}
        return f"iter {row['iter']}: " + ", ".join(f"{k} {v:.4f}" for k, v in evals.items()) if evals else None

    def summary(self) -> dict[str, Any]:
        return {"wall_time_s": self.train_time}  # time spent training, over every session of the run


def run_sft(
    model: nn.Module,
    stream: Any,
    train: TrainConfig,
    optim: OptimConfig,
    schedule: ScheduleConfig,
    out_dir: Path,
    **kwargs: Any,
) -> dict[str, Any]:
    """Fine-tune the trainable parameters of `model` for `train.max_iters` steps with an `SFTTrainer`
    (arguments as there; no checkpoints unless ``save_checkpoints=True``); returns the summary dict.

    Raises:
        ValueError: nothing trainable, a diverging loss, or `resume_state` already at `train.max_iters`.
    """
    kwargs.setdefault("save_checkpoints", False)
    return SFTTrainer(model, stream, train, optim, schedule, out_dir, **kwargs).fit()
