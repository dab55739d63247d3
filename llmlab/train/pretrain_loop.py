"""Pretraining as a specialisation of the one `Trainer`: random token windows in, next-token loss, whole-model
checkpoints (``model.safetensors`` + ``model_config.json`` + the corpus's ``tokenizer.json``).

Every micro-batch holds the same number of tokens, so each weighs the same in a step (the default
`Trainer.loss_units`): ``grad_accum`` trades memory for time without changing the optimisation.

Evaluation: the mean val loss over the first ``eval_iters`` batches of *consecutive* windows of ``val.bin``
(``SequentialLoader``), the same windows every time, so successive val losses are directly comparable and
evaluating draws no random numbers (which keeps resumed runs bit-identical to uninterrupted ones).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from llmlab.train.config import PretrainConfig
from llmlab.train.distributed import DistContext, all_reduce_sum, full_model_state_dict
from llmlab.train.trainer import Trainer

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchLoader(Protocol):
    """What pretraining needs from a training loader (e.g. ``llmlab.data.RandomWindowLoader``)."""

    def next_batch(self) -> Batch: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class PretrainTrainer(Trainer):
    """Trains a language model whose ``forward(x, y)`` returns an object with a ``.loss``.

    Args:
        model: the unwrapped model (a `GPT`, or anything with ``config``, ``save_pretrained`` and that forward).
        config: the run's `PretrainConfig` (``train``, ``optim``, ``schedule`` sections are used).
        train_loader: gives this rank's micro-batches.
        val_batches: returns a fresh iterable of this rank's val batches for one evaluation (None = no
            evaluation); every rank must get the same number of batches.
        out_dir: the run folder.
        tokenizer_file: copied into each checkpoint when given.
        **kwargs: `Trainer`'s keyword arguments (ctx, device, resume_state, run_info, say).
    """

    def __init__(
        self,
        model: nn.Module,
        config: PretrainConfig,
        train_loader: BatchLoader,
        val_batches: Callable[[], Iterable[Batch]] | None,
        out_dir: str | Path,
        *,
        tokenizer_file: str | Path | None = None,
        ctx: DistContext | None = None,
        **kwargs: Any,
    ) -> None:
        self.cfg, self.train_loader, self.val_batches = config, train_loader, val_batches
        super().__init__(model, config.train, config.optim, config.schedule, out_dir, ctx=ctx, **kwargs)
        self.tokenizer_file = Path(tokenizer_file) if tokenizer_file is not None else None

    # (a) a batch: this rank's rows of random windows
    def next_batch(self) -> Batch:
        return self.train_loader.next_batch()

    def batch_tokens(self, batch: Batch) -> int:
        return batch[0].numel()

    # (b) its loss: the model's mean next-token cross-entropy
    def batch_loss(self, batch: Batch) -> torch.Tensor:
        x, y = batch
        return self.model(x, y).loss

    # (c) a checkpoint: the whole model, loadable on its own
    def gather_weights(self) -> dict[str, torch.Tensor] | None:
        return full_model_state_dict(self.raw_model, self.ctx) if self.ctx.mode == "fsdp" else None

    def save_weights(self, directory: Path) -> None:
        if self._gathered is None:
            self.raw_model.save_pretrained(directory)
            return
        self._cpu_model().save_pretrained(directory)

    def save_ema_weights(self, directory: Path, shadow: dict[str, torch.Tensor]) -> None:
        """A whole model like `save_weights`; under FSDP built from the gathered weights with the EMA copied in."""
        if self._gathered is None:
            super().save_ema_weights(directory, shadow)
            return
        cpu_model = self._cpu_model()
        with torch.no_grad():
            for name, p in cpu_model.named_parameters():  # tied weights appear once, as in the shadow
                if name in shadow:
                    p.copy_(shadow[name])
        cpu_model.save_pretrained(directory)

    def _cpu_model(self) -> nn.Module:
        """A CPU model holding the gathered full state dict (FSDP saves)."""
        with torch.random.fork_rng(devices=[]):  # building a model must not consume training RNG
            cpu_model = self.model_class(self.model_config)
        cpu_model.load_state_dict(self._gathered)
        return cpu_model

    def data_state(self) -> dict[str, Any]:
        return self.train_loader.state_dict()

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.train_loader.load_state_dict(state)

    # evaluation, messages, summary
    @property
    def can_evaluate(self) -> bool:
        return self.val_batches is not None and self.tc.eval_iters > 0

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Token-weighted mean loss over the val batches, summed over ranks.

        Under data parallelism ``val_batches`` yields this rank's rows of each global val batch, so the
        result equals a single process evaluating the whole global batches.
        """
        assert self.val_batches is not None
        self.model.eval()
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)  # (sum of token losses, tokens)
        for x, y in self.val_batches():
            with self.precision.autocast():
                loss = self.model(x.to(self.device), y.to(self.device)).loss.double()
            totals[0] += loss * y.numel()
            totals[1] += y.numel()
        self.model.train()
        totals = all_reduce_sum(totals, self.ctx)
        return {"val_loss": float(totals[0] / totals[1])} if totals[1] > 0 else {}

    def start_message(self, start: int) -> str:
        world = self.ctx.world_size
        return (
            f"training {self.n_params:,} parameters on {self.device} ({self.precision.name}, "
            f"{world} process{'es' if world > 1 else ''}, {self.ctx.mode}); "
            f"{type(self.optimizer).__name__}: {self.group_report}"
            + (f"; resuming at iteration {start}" if start else "")
        )

    def summary(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"checkpoint": str(self.out_dir / "checkpoints" / "last"), "out_dir": str(self.out_dir)}
        if self.tc.save_best and self.best_val_loss is not None:
            facts["best_checkpoint"] = str(self.out_dir / "checkpoints" / "best")
        if self.ema is not None:
            facts["ema_checkpoint"] = str(self.out_dir / "checkpoints" / "last" / "ema")
        return facts
