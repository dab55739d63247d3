"""DPO (and IPO, cDPO, hinge, SimPO, ORPO) as a specialisation of the one `llmlab.train.Trainer`.

(a) A batch is B preference pairs from `llmlab.data.preference.PairStream`, laid out by
`llmlab.align.packing.pair_rows`: each pair once as ``prompt | chosen | rejected`` in packed rows (the prompt
computed once, no padding; whenever `can_pack(model)`), else 2B right-padded rows (the B chosen rows first:
`collate_pairs`). Either way the policy runs ONE forward over chosen and rejected together, and only the
positions that predict response tokens go through the LM head. (b) The loss is the mean over the pairs of
`llmlab.align.dpo.preference_loss`; the reference's summed log-probabilities come either from
`llmlab.align.reference.ReferencePolicy` each step under ``no_grad`` (for a PEFT policy the same model with its
adapters disabled: no second copy in memory), or were computed once before training
(`llmlab.align.dpo.precompute_ref_logprobs`; stored per pair and kept in the checkpoint's data state). ORPO adds
the chosen response's NLL, and ``dpo.sft_weight`` adds it for any loss (RPO). (c) Checkpoints hold the
trainable parameters (`llmlab.train.sft_loop.save_trainable`).

Logged per step (means over the step's pairs, all ranks): ``rewards_chosen``, ``rewards_rejected``,
``rewards_accuracy`` (share of pairs whose chosen reward is higher), ``rewards_margin``, ``logps_chosen``,
``logps_rejected`` (summed response log-probabilities under the policy); `evaluate` gives ``val_loss``,
``val_rewards_accuracy`` and ``val_rewards_margin`` on the held-out pairs.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.align.dpo import needs_reference, preference_loss, split_pairs
from llmlab.align.packing import can_pack, pair_rows, response_logprob_sums
from llmlab.data.preference import PairStream, PreferencePair
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.distributed import all_reduce_sum
from llmlab.train.sft_loop import save_trainable
from llmlab.train.trainer import Trainer, to_device

STEP_METRICS = ("rewards_chosen", "rewards_rejected", "rewards_accuracy", "rewards_margin", "logps_chosen",
                "logps_rejected")  # fmt: skip


class DPOTrainer(Trainer):
    """Trains a policy on preference pairs with a `llmlab.align.dpo` loss (see the module docstring).

    Args:
        model: the policy with its trainable parameters set (with `resume_state`: already holding them).
        stream: this rank's `PairStream` over `train_pairs`.
        train / optim / schedule: the config sections.
        out_dir: the run folder.
        loss: `preference_loss` keyword arguments (loss, beta, label_smoothing, simpo_gamma).
        pad_id: the padding id.
        reference: the `ReferencePolicy` (None when the loss is reference-free or the log-probs are precomputed).
        ref_logps: precomputed reference log-probs, ``{"train": (N, 2), "val": (M, 2)}`` (chosen, rejected) in
            the order of `train_pairs` / `val_pairs`; None = use `reference` each step.
        sft_weight: weight of the chosen response's NLL (added to 1 for ORPO).
        val_pairs: held-out pairs (None or empty = no evaluation).
        eval_batch_size: pairs per evaluation forward.
        pack: score packed rows without padding (None: whenever `llmlab.align.packing.can_pack(model)`).
        **kwargs: `Trainer`'s keyword arguments (ctx, device, resume_state, run_info, save_checkpoints, say).
    """

    fit_warmup_to_run = True

    def __init__(
        self,
        model: nn.Module,
        stream: PairStream,
        train: TrainConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        out_dir: str | Path,
        *,
        loss: dict[str, Any],
        pad_id: int,
        reference: Any = None,
        ref_logps: dict[str, torch.Tensor | None] | None = None,
        sft_weight: float = 0.0,
        val_pairs: Sequence[PreferencePair] | None = None,
        eval_batch_size: int = 16,
        pack: bool | None = None,
        **kwargs: Any,
    ) -> None:
        self.stream, self.loss_kwargs, self.pad_id = stream, dict(loss), pad_id
        self.uses_reference = needs_reference(self.loss_kwargs["loss"])
        if self.uses_reference and reference is None and ref_logps is None:
            raise ValueError(f"the {self.loss_kwargs['loss']} loss needs a reference policy or precomputed log-probs")
        self.reference, self.ref_logps = reference, ref_logps
        self.nll_weight = sft_weight + (1.0 if self.loss_kwargs["loss"] == "orpo" else 0.0)
        self.val_pairs, self.eval_batch_size = list(val_pairs or []), eval_batch_size
        self.pack = can_pack(model) if pack is None else pack
        self._row_of = {id(p): i for i, p in enumerate(stream.items)}  # pair -> row of ref_logps["train"]
        self._sums: torch.Tensor | None = None  # this step, this rank, on the device (no sync): metrics + pairs
        super().__init__(model, train, optim, schedule, out_dir, **kwargs)
        if self.reference is not None:
            self.reference.to(self.device)

    # (a) a batch: B pairs as 2B rows, packed (+ their precomputed reference log-probs)
    def collate(self, pairs: Sequence[PreferencePair]) -> dict[str, Any]:
        """B pairs as a batch (`llmlab.align.packing.pair_rows`: packed, or 2B padded rows)."""
        return pair_rows(pairs, self.pad_id, pack=self.pack)

    def next_batch(self) -> dict[str, Any]:
        pairs = self.stream.next_batch()
        batch = self.collate(pairs)
        if self.ref_logps is not None:
            rows = torch.tensor([self._row_of[id(p)] for p in pairs])
            batch["ref_logps"] = self.ref_logps["train"][rows]  # (B, 2)
        return batch

    def loss_units(self, batch: dict[str, Any]) -> int:
        return int(batch["margin"].shape[0])  # pairs: a step is the mean over its pairs

    def batch_tokens(self, batch: dict[str, Any]) -> int:
        return int(batch["tokens"])  # the tokens of the 2B sequences (a shared prompt counts twice)

    # (b) its loss
    def pair_losses(self, batch: dict[str, Any], model: nn.Module, call: Any = None) -> dict[str, Any]:
        """Per-pair losses, rewards and log-probs of a batch (the policy's forward with gradients if enabled)."""
        chosen, rejected = split_pairs(response_logprob_sums(model, batch, call=call))  # (B,) each
        ref_chosen = ref_rejected = None
        if self.uses_reference:
            if "ref_logps" in batch:
                ref_chosen, ref_rejected = batch["ref_logps"][:, 0], batch["ref_logps"][:, 1]
            else:
                with torch.no_grad(), self.reference.model() as reference:  # adapters off / the frozen copy
                    ref_chosen, ref_rejected = split_pairs(response_logprob_sums(reference, batch))
        chosen_len, rejected_len = split_pairs(batch["response_lengths"])
        losses, chosen_r, rejected_r = preference_loss(
            chosen, rejected, ref_chosen, ref_rejected, chosen_lengths=chosen_len, rejected_lengths=rejected_len,
            **self.loss_kwargs,
        )  # fmt: skip
        loss = losses.mean()
        if self.nll_weight:
            loss = loss + self.nll_weight * (-chosen.sum() / chosen_len.sum().clamp(min=1))  # token-mean NLL
        return {"loss": loss, "losses": losses, "chosen_r": chosen_r, "rejected_r": rejected_r,
                "chosen": chosen.detach(), "rejected": rejected.detach()}  # fmt: skip

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.pair_losses(batch, self.raw_model, call=self.model)
        sums = _metric_sums(out)
        self._sums = sums if self._sums is None else self._sums + sums
        return out["loss"]

    # (c) a checkpoint: the trainable parameters; the stream position and the precomputed reference log-probs
    def save_weights(self, directory: Path) -> None:
        save_trainable(self.raw_model, directory)

    def data_state(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "ref_logps": self.ref_logps}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        if state.get("ref_logps") is not None:
            self.ref_logps = state["ref_logps"]

    # logging and evaluation
    def step_metrics(self) -> dict[str, Any]:
        """The step's reward/log-prob means over its pairs on all ranks (see the module docstring)."""
        sums = self._sums if self._sums is not None else torch.zeros(len(STEP_METRICS) + 1, device=self.device)
        sums = (all_reduce_sum(sums, self.ctx) if self.ctx.enabled else sums).double().cpu()
        self._sums = None
        n = max(float(sums[-1]), 1.0)
        return {name: float(v) / n for name, v in zip(STEP_METRICS, sums[:-1].tolist(), strict=True)}

    @property
    def can_evaluate(self) -> bool:
        return bool(self.val_pairs)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Mean loss, reward accuracy and margin over the held-out pairs (batches split over ranks)."""
        was_training = self.raw_model.training
        self.raw_model.eval()
        totals = torch.zeros(4, dtype=torch.float64)  # loss sum, correct, margin sum, pairs
        starts = range(0, len(self.val_pairs), self.eval_batch_size)
        for start in itertools.islice(starts, self.ctx.rank, None, self.ctx.world_size):
            pairs = self.val_pairs[start : start + self.eval_batch_size]
            batch = self.collate(pairs)
            if self.ref_logps is not None and self.ref_logps.get("val") is not None:
                batch["ref_logps"] = self.ref_logps["val"][start : start + len(pairs)]
            with self.precision.autocast():
                out = self.pair_losses(to_device(batch, self.device), self.raw_model)
            margin = (out["chosen_r"] - out["rejected_r"]).double().cpu()
            totals += torch.tensor([float(out["losses"].double().sum()), float((margin > 0).sum()),
                                    float(margin.sum()), len(pairs)], dtype=torch.float64)  # fmt: skip
        self.raw_model.train(was_training)
        if self.ctx.enabled:
            totals = all_reduce_sum(totals.to(self.device), self.ctx).cpu()
        n = max(float(totals[3]), 1.0)
        return {"val_loss": float(totals[0]) / n, "val_rewards_accuracy": float(totals[1]) / n,
                "val_rewards_margin": float(totals[2]) / n}  # fmt: skip

    def describe_row(self, row: dict[str, Any]) -> str | None:
        """Evaluation rows: the held-out loss, reward accuracy and margin beside the training ones."""
        if row.get("val_loss") is None:
            return None
        return (
            f"iter {row['iter']}: loss {row['loss']:.4f}, rewards_accuracy {row['rewards_accuracy']:.3f}, "
            f"val_loss {row['val_loss']:.4f}, val_rewards_accuracy {row['val_rewards_accuracy']:.3f}, "
            f"val_rewards_margin {row['val_rewards_margin']:.4f}"
        )

    def summary(self) -> dict[str, Any]:
        return {"wall_time_s": self.train_time}


def _metric_sums(out: dict[str, Any]) -> torch.Tensor:
    """The sums behind `STEP_METRICS` of one micro-batch and its pair count: (7,) float32 on its device."""
    chosen_r, rejected_r = out["chosen_r"].float(), out["rejected_r"].float()
    values = [
        chosen_r.sum(),
        rejected_r.sum(),
        (chosen_r > rejected_r).float().sum(),
        (chosen_r - rejected_r).sum(),
        out["chosen"].float().sum(),
        out["rejected"].float().sum(),
        chosen_r.new_tensor(chosen_r.shape[0]),
    ]
    return torch.stack(values)
