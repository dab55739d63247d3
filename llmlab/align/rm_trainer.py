"""Reward-model training on llmlab's one trainer (`llmlab.train.Trainer`): Bradley-Terry loss on preference pairs
(Ouyang et al. 2022, https://arxiv.org/abs/2203.02155), with the optional margin (Llama 2,
https://arxiv.org/abs/2307.09288) and reward centring (``center_rewards_coefficient`` times the mean of
``(r_chosen + r_rejected)^2``, Eisenstein et al. 2023, https://arxiv.org/abs/2312.09244, as trl's RewardTrainer).

A batch is B pairs as 2B rows (`llmlab.data.preference.collate_pairs`: chosen rows first), scored in one forward
pass. The loss is the mean over pairs and `loss_units` is B, so gradient accumulation and DDP give the mean over
every pair of the step. Logged per step (over all micro-batches and ranks): ``accuracy`` (share of pairs with
r_chosen > r_rejected), ``chosen_reward``, ``rejected_reward``, ``margin`` (their mean difference); ``evaluate``
adds ``val_loss`` and ``val_accuracy`` (and the val rewards) on held-out pairs. Checkpoints hold the trainable
weights (the head, and the adapter or backbone) in ``trainable.safetensors`` and the pair stream's position.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from llmlab.align.reward_model import RewardModel, bradley_terry_loss
from llmlab.data.preference import PairStream, PreferencePair, collate_pairs
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.distributed import all_reduce_sum
from llmlab.train.sft_loop import StreamTrainer
from llmlab.train.trainer import to_device

_STATS = ("pairs", "correct", "chosen", "rejected", "loss")  # sums kept per step / per evaluation


def pair_rewards(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen (B,), rejected (B,)) rewards of a `collate_pairs` batch in one forward pass (`model` may be DDP)."""
    rewards = model(batch["input_ids"], batch["attention_mask"])  # (2B,)
    b = rewards.shape[0] // 2
    return rewards[:b], rewards[b:]


class RewardTrainer(StreamTrainer):
    """Trains a `RewardModel` on a `PairStream` (see the module docstring).

    Args:
        model: the reward model with its trainable parameters set (with `resume_state`: holding the checkpoint's
            trainable weights, `llmlab.train.sft_loop.load_trainable`).
        stream: this rank's `PairStream`.
        train / optim / schedule / out_dir: as `Trainer`.
        pad_id: the padding id of the batches.
        use_margin: subtract each pair's margin inside the sigmoid.
        center_rewards_coefficient: weight of the reward-centring term (0 = off).
        val_pairs: held-out pairs (empty = no evaluation).
        **kwargs: `Trainer`'s keyword arguments (ctx, device, resume_state, run_info, save_checkpoints, say).
    """

    fit_warmup_to_run = True

    def __init__(
        self,
        model: RewardModel,
        stream: PairStream,
        train: TrainConfig,
        optim: OptimConfig,
        schedule: ScheduleConfig,
        out_dir: str | Path,
        *,
        pad_id: int,
        use_margin: bool = False,
        center_rewards_coefficient: float = 0.0,
        val_pairs: Sequence[PreferencePair] = (),
        **kwargs: Any,
    ) -> None:
        self.stream, self.pad_id, self.val_pairs = stream, pad_id, list(val_pairs)
        self.use_margin, self.center = use_margin, center_rewards_coefficient
        self._sums = dict.fromkeys(_STATS, 0.0)
        super().__init__(model, train, optim, schedule, out_dir, **kwargs)

    # (a) batches
    def next_batch(self) -> dict[str, torch.Tensor]:
        return collate_pairs(self.stream.next_batch(), self.pad_id)

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["margin"].shape[0])

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    # (b) the loss
    def pair_loss(self, chosen: torch.Tensor, rejected: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The mean Bradley-Terry loss of a batch's pairs, with the margin and centring term as configured."""
        loss = bradley_terry_loss(chosen, rejected, batch["margin"] if self.use_margin else None)
        if self.center:
            loss = loss + self.center * ((chosen + rejected) ** 2).mean()
        return loss

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        chosen, rejected = pair_rewards(self.model, batch)
        loss = self.pair_loss(chosen, rejected, batch)
        self._accumulate(self._sums, chosen.detach(), rejected.detach(), loss.detach())
        return loss

    @staticmethod
    def _accumulate(sums: dict[str, float], chosen: torch.Tensor, rejected: torch.Tensor, loss: torch.Tensor) -> None:
        b = chosen.shape[0]
        sums["pairs"] += b
        sums["correct"] += float((chosen > rejected).sum())
        sums["chosen"] += float(chosen.sum())
        sums["rejected"] += float(rejected.sum())
        sums["loss"] += float(loss) * b

    def _reduced(self, sums: dict[str, float]) -> dict[str, float]:
        values = torch.tensor([sums[k] for k in _STATS], dtype=torch.float64, device=self.device)
        return dict(zip(_STATS, all_reduce_sum(values, self.ctx).tolist(), strict=True))

    # logging and evaluation
    def step_metrics(self) -> dict[str, Any]:
        """Accuracy, mean chosen/rejected rewards and margin of the step's pairs (all ranks)."""
        s = self._reduced(self._sums)
        self._sums = dict.fromkeys(_STATS, 0.0)
        n = max(s["pairs"], 1.0)
        return {
            "accuracy": s["correct"] / n,
            "chosen_reward": s["chosen"] / n,
            "rejected_reward": s["rejected"] / n,
            "margin": (s["chosen"] - s["rejected"]) / n,
        }

    @property
    def can_evaluate(self) -> bool:
        return bool(self.val_pairs)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Held-out loss, accuracy and mean rewards (rank r scores batches r, r + N, ...; sums over ranks)."""
        model = self.raw_model
        was_training = model.training
        model.eval()
        sums = dict.fromkeys(_STATS, 0.0)
        size = self.tc.eval_batch_size
        starts = range(0, len(self.val_pairs), size)
        for start in itertools.islice(starts, self.ctx.rank, None, self.ctx.world_size):
            batch = to_device(collate_pairs(self.val_pairs[start : start + size], self.pad_id), self.device)
            with self.precision.autocast():
                chosen, rejected = pair_rewards(model, batch)
            loss = bradley_terry_loss(chosen, rejected, batch["margin"] if self.use_margin else None)
            self._accumulate(sums, chosen, rejected, loss)
        model.train(was_training)
        s = self._reduced(sums)
        n = max(s["pairs"], 1.0)
        return {
            "val_loss": s["loss"] / n,
            "val_accuracy": s["correct"] / n,
            "val_chosen_reward": s["chosen"] / n,
            "val_rejected_reward": s["rejected"] / n,
        }

    def describe_row(self, row: dict[str, Any]) -> str | None:
        """Evaluations only (every step's figures are in metrics.jsonl)."""
        if row.get("val_loss") is None:
            return None
        return (
            f"iter {row['iter']}: loss {row['loss']:.4f}, accuracy {row['accuracy']:.3f}, "
            f"val_loss {row['val_loss']:.4f}, val_accuracy {row['val_accuracy']:.3f}"
        )

    def summary(self) -> dict[str, Any]:
        return {"wall_time_s": self.train_time, "train_pairs": len(self.stream.items), "val_pairs": len(self.val_pairs)}
