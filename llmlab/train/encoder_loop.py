"""Encoder pretraining objectives on the one `Trainer`: MLM (+NSP/SOP), ELECTRA, SimCSE, SupCon, and the
encoder-decoder denoising objectives (T5 span corruption, BART text infilling).

The objective's data (`llmlab.data.masking`, `llmlab.data.sentence_tasks`) is made batch by batch from
*examples* (segment pairs, segments or labelled texts) by a `BatchBuilder`; `ExampleStream` says which examples
a batch holds: a seeded permutation per epoch, so (epoch, position) is the whole data position and a resumed run
draws exactly the batches an uninterrupted one would. Masks are drawn from a generator seeded by
`llmlab.data.masking.masking_seed` (example, epoch): static masking repeats them every epoch, dynamic
(RoBERTa) masking draws new ones; NSP/SOP pairs are re-drawn each epoch from the epoch's seed.

Checkpoints hold the encoder (``model.safetensors`` + ``model_config.json``: a loadable BERT) and, in
``objective_heads.safetensors``, the objective's extra weights (ELECTRA's generator and detector, SimCSE's MLP).

Logged per step: ``mlm_accuracy`` (masked tokens predicted exactly), ``sentence_accuracy`` (NSP/SOP),
``disc_accuracy`` (ELECTRA), ``token_accuracy`` (span corruption / infilling targets, teacher-forced);
evaluation: ``val_loss`` and the same accuracies on the fixed held-out batches.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.train.contrastive import simcse_loss, supcon_loss
from llmlab.train.trainer import Trainer

Batch = dict[str, torch.Tensor]
BatchBuilder = Callable[[int, list[int]], Batch]  # (epoch, example indices) -> batch
HEADS_FILE = "objective_heads.safetensors"
ACCURACIES = {
    "mlm": "mlm_accuracy",
    "sentence": "sentence_accuracy",
    "disc": "disc_accuracy",
    "token": "token_accuracy",
}


class ExampleStream:
    """Batches of example indices: epoch e visits ``randperm(n)`` seeded by ``seed + e``; a batch never spans
    two epochs (the last one of an epoch may be short)."""

    def __init__(self, n_examples: int, batch_size: int, seed: int) -> None:
        if n_examples < 1:
            raise ValueError("no training examples: the corpus is too small for data.max_length; add text")
        self.n, self.batch_size, self.seed = n_examples, batch_size, seed
        self.epoch, self.position = 0, 0
        self._order: list[int] | None = None

    def _epoch_order(self) -> list[int]:
        if self._order is None:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            self._order = torch.randperm(self.n, generator=gen).tolist()
        return self._order

    def next_indices(self) -> tuple[int, list[int]]:
        """(epoch, indices) of the next batch."""
        if self.position >= self.n:
            self.epoch, self.position, self._order = self.epoch + 1, 0, None
        order = self._epoch_order()
        indices = order[self.position : self.position + self.batch_size]
        self.position += len(indices)
        return self.epoch, indices

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self._order = int(state["epoch"]), int(state["position"]), None


def right_pad(rows: list[list[int]], value: int) -> torch.Tensor:
    """(B, T) long tensor of `rows` right-padded with `value` to the longest."""
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows], dtype=torch.long)


class EncoderObjectiveTrainer(Trainer):
    """Trains one encoder objective (see the module docstring).

    Args:
        module: the objective's module (`llmlab.models.pretraining_heads`: MaskedLMPretraining,
            ElectraPretraining or ContrastiveEncoder).
        objective: the objective name (mlm, mlm_nsp, mlm_sop, electra, simcse, supcon).
        encoder: the encoder inside `module` that is saved as the model.
        stream / builder: which examples each batch holds, and how a batch is made of them.
        val_batches: the fixed held-out batches (empty = no evaluation).
        config: the run's config (``train``, ``optim``, ``schedule``, ``options`` sections are used).
        out_dir: the run folder.
        **kwargs: `Trainer`'s keyword arguments (ctx, device, resume_state, run_info, say).
    """

    def __init__(
        self,
        module: nn.Module,
        objective: str,
        encoder: nn.Module,
        stream: ExampleStream,
        builder: BatchBuilder,
        val_batches: list[Batch],
        config: Any,
        out_dir: str | Path,
        *,
        tokenizer_file: str | Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.objective, self.encoder, self.cfg = objective, encoder, config
        self.stream, self.builder, self.val_batches = stream, builder, val_batches
        self.sampler = torch.Generator().manual_seed(config.train.seed)  # ELECTRA's replacement sampling
        self._counts: dict[str, int] = {}
        super().__init__(module, config.train, config.optim, config.schedule, out_dir, **kwargs)
        self.tokenizer_file = Path(tokenizer_file) if tokenizer_file is not None else None

    # (a) a batch
    def next_batch(self) -> Batch:
        epoch, indices = self.stream.next_indices()
        return self.builder(epoch, indices)

    def batch_tokens(self, batch: Batch) -> int:
        return int(batch["attention_mask"].sum())

    # (b) its loss
    def objective_loss(self, batch: Batch, sampler: torch.Generator) -> tuple[torch.Tensor, dict[str, int]]:
        """The loss of a batch and its accuracy counts (``<name>_correct`` / ``<name>_total``)."""
        if self.objective in ("simcse", "supcon"):
            ids, mask = batch["input_ids"], batch["attention_mask"]
            if self.objective == "simcse":  # the same sentences twice: two dropout masks
                z = self.model(torch.cat([ids, ids]), torch.cat([mask, mask]))  # (2B, C)
                return simcse_loss(z[: len(ids)], z[len(ids) :], self.cfg.options.temperature), {}
            z = self.model(ids, mask)  # (B, C)
            return supcon_loss(z, batch["labels"], self.cfg.options.temperature), {}
        out = self.model(batch, sampler) if self.objective == "electra" else self.model(batch)
        return out.loss, out.counts

    def batch_loss(self, batch: Batch) -> torch.Tensor:
        loss, counts = self.objective_loss(batch, self.sampler)
        for key, value in counts.items():
            self._counts[key] = self._counts.get(key, 0) + value
        return loss

    def step_metrics(self) -> dict[str, Any]:
        counts, self._counts = self._counts, {}
        return accuracies(counts)

    # (c) a checkpoint: the encoder as a loadable model + the objective's other weights
    def save_weights(self, directory: Path) -> None:
        from safetensors.torch import save_file

        self.encoder.save_pretrained(directory)
        heads = objective_head_state(self.raw_model, self.encoder)
        if heads:
            save_file(heads, str(directory / HEADS_FILE))

    def data_state(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "sampler": self.sampler.get_state()}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.sampler.set_state(state["sampler"])

    # evaluation, messages
    @property
    def can_evaluate(self) -> bool:
        return bool(self.val_batches)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss and accuracies over the fixed val batches (dropout off; a private sampler for ELECTRA)."""
        from llmlab.train.trainer import to_device

        self.model.eval()
        sampler = torch.Generator().manual_seed(0)
        total, counts = 0.0, {}
        for batch in self.val_batches:
            with self.precision.autocast():
                loss, batch_counts = self.objective_loss(to_device(batch, self.device), sampler)
            total += float(loss)
            for key, value in batch_counts.items():
                counts[key] = counts.get(key, 0) + value
        self.model.train()
        return {"val_loss": total / len(self.val_batches), **{f"val_{k}": v for k, v in accuracies(counts).items()}}

    def describe_row(self, row: dict[str, Any]) -> str:
        msg = f"iter {row['iter']}: loss {row['loss']:.4f}, lr {row['lr']:.2e}"
        for name in ACCURACIES.values():
            if row.get(name) is not None:
                msg += f", {name.replace('_accuracy', '')} acc {row[name]:.3f}"
        if row.get("val_loss") is not None:
            msg += f", val_loss {row['val_loss']:.4f}"
            msg += "".join(f", val {n.replace('_accuracy', '')} acc {row['val_' + n]:.3f}"
                           for n in ACCURACIES.values() if row.get("val_" + n) is not None)  # fmt: skip
        return msg

    def summary(self) -> dict[str, Any]:
        return {"objective": self.objective, "checkpoint": str(self.out_dir / "checkpoints" / "last")}


def accuracies(counts: dict[str, int]) -> dict[str, float]:
    """``mlm_accuracy`` etc. from ``mlm_correct`` / ``mlm_total`` counts (only those with a total)."""
    out: dict[str, float] = {}
    for prefix, name in ACCURACIES.items():
        total = counts.get(f"{prefix}_total", 0)
        if total:
            out[name] = counts.get(f"{prefix}_correct", 0) / total
    return out


def objective_head_state(module: nn.Module, encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The weights of `module` that are not the encoder's (shared tensors once), as contiguous CPU tensors."""
    encoder_ids = {id(p) for p in encoder.state_dict(keep_vars=True).values()}
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        if id(tensor) in encoder_ids or id(tensor) in seen:
            continue
        seen.add(id(tensor))
        out[name] = tensor.detach().cpu().contiguous().clone()
    return out


def load_objective_heads(module: nn.Module, directory: Path) -> None:
    """Load ``objective_heads.safetensors`` of a checkpoint into `module` (the encoder is loaded already)."""
    from safetensors.torch import load_file

    path = directory / HEADS_FILE
    if not path.is_file():
        return
    state = load_file(str(path))
    missing_here = [k for k in state if k not in module.state_dict()]
    if missing_here:
        raise ValueError(
            f"{path} has weights this objective does not use ({missing_here[0]}); resume with its settings"
        )
    module.load_state_dict(state, strict=False)
