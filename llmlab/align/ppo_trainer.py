"""RLHF with PPO on the one `llmlab.train.Trainer`: rollouts from the policy, rewards, GAE, then several
epochs of clipped-PPO minibatch steps over each rollout (Ziegler et al. 2019, https://arxiv.org/abs/1909.08593;
Ouyang et al. 2022, https://arxiv.org/abs/2203.02155; the formulas are `llmlab.align.ppo`'s).

(a) ``next_batch`` pops the next micro-batch of the rollout buffer; when the buffer is empty it collects a
rollout: ``ppo.prompts_per_rollout`` prompts from this rank's `PromptStream`, one completion each
from llmlab's batched generator with the KV cache (`llmlab.align.rollout.sample_rollout`), rewards
(`llmlab.align.rewards.RewardSources`, with the missing-EOS penalty), the sampling policy's log-probabilities
and values and the reference's log-probabilities (no gradient), KL-penalised per-token rewards, GAE and
whitening; then ``ppo_epochs`` shuffled passes over the rows, cut into micro-batches. (b) ``batch_loss`` is the
PPO loss of a micro-batch (a mean over its response tokens; `loss_units` = their count, so an optimizer step
is the token-mean over its minibatch of ``ppo.minibatch_size`` rows per rank, ``train.grad_accum`` micro-batches).
Like ``train.batch_size`` both sizes are per process: N ranks roll out and learn from N times the rows. One
optimizer step per minibatch; ``train.max_iters`` counts optimizer steps (``ppo_epochs * prompts_per_rollout /
minibatch_size`` per rollout). (c) A checkpoint holds the trainable weights of `PolicyWithValue` (the policy's
adapter or weights and the value head) and, in ``trainer_state.pt``, the prompt stream, the KL controller and
the partly consumed rollout buffer of every rank, so a resumed run continues exactly.

Logged per step: ``reward`` (the rollout's mean score), ``kl`` (its mean sequence KL to the reference),
``kl_coef``, ``response_length``, and over the step's minibatch ``policy_loss``, ``value_loss``, ``entropy``,
``approx_kl``, ``clip_frac``, ``value_clip_frac``; per-source rewards (``reward_<name>``) when there are several.
Under DDP the statistics are over all ranks; rewards and advantages are whitened per rank (as trl).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from llmlab.align.evaluate import completion_texts, evaluate_policy
from llmlab.align.ppo import (
    PolicyWithValue,
    compute_gae,
    kl_controller,
    kl_penalised_rewards,
    ppo_losses,
    score_in_chunks,
    whiten,
)
from llmlab.align.reference import ReferencePolicy
from llmlab.align.rollout import sample_rollout
from llmlab.config.sampling import SamplingConfig
from llmlab.train.distributed import all_gather_objects, all_reduce_sum
from llmlab.train.sft_loop import save_trainable
from llmlab.train.trainer import Trainer

LOSS_STATS = ("policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac", "value_clip_frac")
BUFFER_KEYS = ("input_ids", "attention_mask", "response_mask", "old_logprobs", "old_values", "advantages", "returns")


class PPOTrainer(Trainer):
    """PPO over rollouts of a `PolicyWithValue` (see the module docstring).

    Args:
        model: the `PolicyWithValue` (its policy's trainable parameters set; with `resume_state`, already holding
            the checkpoint's weights).
        reference: the reference policy (built from the policy before any training, and before DDP).
        prompts: this rank's `PromptStream` (batch size ``ppo.prompts_per_rollout``).
        reward_fn: ``(prompts, completions, records, ended=) -> (N,)`` (`RewardSources`).
        ppo: the ``ppo`` config section (`llmlab.recipes.align_config.PPOConfig`).
        tokenizer: decodes completions for the reward.
        sampling / eos_ids / pad_id: how rollouts are sampled.
        micro_batch_size: rows per micro-batch (``ppo.minibatch_size / train.grad_accum``).
        score_batch_size: rows scored at once when collecting a rollout (0 = all).
        val_prompts: held-out prompts for `evaluate` (reward and KL of fresh samples); empty = no evaluation.
        **kwargs: `Trainer`'s arguments (train, optim, schedule, out_dir, ctx, resume_state, run_info, say, ...).
    """

    fit_warmup_to_run = True

    def __init__(
        self,
        model: PolicyWithValue,
        reference: ReferencePolicy,
        prompts: Any,
        reward_fn: Callable[..., torch.Tensor],
        ppo: Any,
        *,
        tokenizer: Any,
        sampling: SamplingConfig,
        eos_ids: Sequence[int],
        pad_id: int,
        micro_batch_size: int,
        score_batch_size: int = 0,
        val_prompts: Sequence[Any] = (),
        **kwargs: Any,
    ) -> None:
        self.reference, self.prompts, self.reward_fn, self.ppo = reference, prompts, reward_fn, ppo
        self.tokenizer, self.sampling, self.eos_ids, self.pad_id = tokenizer, sampling, list(eos_ids), pad_id
        self.micro_batch_size, self.score_batch_size = micro_batch_size, score_batch_size
        self.val_prompts = list(val_prompts)
        self.kl_ctl = kl_controller(ppo.kl_coef, ppo.adaptive_kl, ppo.target_kl, ppo.kl_horizon)
        self.buffer: dict[str, torch.Tensor] = {}
        self.queue: list[list[int]] = []  # micro-batches (row indices into the buffer) still to train on
        self.rollouts = 0
        self.rollout_stats: dict[str, float] = {}
        self._sums = dict.fromkeys(LOSS_STATS, 0.0)
        self._tokens = 0
        self.temperature = sampling.temperature  # log-probabilities are scored at the sampling temperature
        super().__init__(model, **kwargs)
        self.reference.to(self.device)

    # ------------------------------------------------------------------ (a) batches from the rollout buffer
    def next_batch(self) -> dict[str, torch.Tensor]:
        if not self.queue:
            self.collect_rollout()
        rows = torch.tensor(self.queue.pop(0), dtype=torch.long)
        width = int(self.buffer["attention_mask"][rows].sum(-1).max())  # drop all-padding columns
        return {k: v[rows, :width] for k, v in self.buffer.items()}

    @torch.no_grad()
    def collect_rollout(self) -> None:
        """Sample, score and prepare the next rollout; fill the buffer and the micro-batch queue."""
        records = self.prompts.next_batch()
        pv: PolicyWithValue = self.raw_model  # type: ignore[assignment]
        rollout = sample_rollout(
            pv.policy, [r.prompt_ids for r in records], n_per_prompt=1, sampling=self.sampling,
            eos_ids=self.eos_ids, pad_id=self.pad_id, batch_size=self.score_batch_size or None,
        ).to(self.device)  # fmt: skip
        completions = completion_texts(rollout, self.tokenizer, self.eos_ids)
        scores = self.reward_fn(
            [r.text for r in records], completions, [r.record for r in records], ended=rollout.ended
        )
        scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1).to(self.device)  # (N,)
        ids, attn, resp = rollout.input_ids, rollout.attention_mask, rollout.response_mask
        rows = {"input_ids": ids, "attention_mask": attn, "response_mask": resp}
        chunk = self.score_batch_size or ids.shape[0]
        was_training = pv.training
        pv.eval()
        try:
            with self.precision.autocast():
                outs = score_in_chunks(lambda **r: pv(**r, temperature=self.temperature), rows, chunk)
                refs = score_in_chunks(
                    lambda **r: self.reference.token_logprobs(**r, temperature=self.temperature), rows, chunk
                )
        finally:
            pv.train(was_training)
        logprobs = torch.cat([o.logprobs for o in outs])  # (N, T)
        values = torch.cat([o.values for o in outs])  # (N, T)
        ref_logprobs = torch.cat([r.logprobs for r in refs])  # (N, T)
        kl_coef = self.kl_ctl.value
        rewards, kl = kl_penalised_rewards(scores, logprobs, ref_logprobs, resp, kl_coef)
        if self.ppo.whiten_rewards:
            rewards = whiten(rewards, resp, shift_mean=False)
        advantages, returns = compute_gae(rewards, values, resp, self.ppo.gamma, self.ppo.lam)
        if self.ppo.whiten_advantages:
            advantages = whiten(advantages, resp)
        n = ids.shape[0]
        totals = torch.tensor(
            [float(scores.sum()), float(kl.sum()), float(rollout.response_lengths.sum()), float(n)],
            dtype=torch.float64, device=self.device,
        )  # fmt: skip
        score_sum, kl_sum, length_sum, rows_all = all_reduce_sum(totals, self.ctx).tolist()
        breakdown = getattr(self.reward_fn, "last_breakdown", {}) or {}
        self.rollout_stats = {
            "reward": score_sum / rows_all, "kl": kl_sum / rows_all, "kl_coef": kl_coef,
            "response_length": length_sum / rows_all,
            **({k: float(v) for k, v in breakdown.items()} if len(breakdown) > 1 else {}),
        }  # fmt: skip
        self.kl_ctl.update(kl_sum / rows_all, int(rows_all))
        tensors = {"old_logprobs": logprobs, "old_values": values, "advantages": advantages, "returns": returns}
        self.buffer = {k: v.detach().cpu() for k, v in (rows | tensors).items()}
        self.queue = self._schedule(n)
        self.rollouts += 1

    def _schedule(self, n: int) -> list[list[int]]:
        """``ppo_epochs`` shuffled passes over `n` rows cut into micro-batches (a private seeded generator)."""
        out = []
        for epoch in range(self.ppo.ppo_epochs):
            g = torch.Generator().manual_seed(self.tc.seed * 1_000_003 + self.rollouts * 1_009 + epoch)
            order = torch.randperm(n, generator=g).tolist()
            out += [order[s : s + self.micro_batch_size] for s in range(0, n, self.micro_batch_size)]
        return out

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["response_mask"].sum())

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    # ------------------------------------------------------------------ (b) the loss of a micro-batch
    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        out = self.model(batch["input_ids"], batch["attention_mask"], batch["response_mask"], self.temperature)
        losses = ppo_losses(
            out.logprobs, batch["old_logprobs"], batch["advantages"], out.values, batch["old_values"],
            batch["returns"], batch["response_mask"], clip_range=self.ppo.clip_range,
            clip_range_value=self.ppo.clip_range_value, vf_coef=self.ppo.vf_coef, entropy=out.entropy,
        )  # fmt: skip
        tokens = self.loss_units(batch)
        for key in LOSS_STATS:
            self._sums[key] += float(getattr(losses, key)) * tokens
        self._tokens += tokens
        return losses.loss

    # ------------------------------------------------------------------ (c) checkpoints
    def save_weights(self, directory: Path) -> None:
        save_trainable(self.raw_model, directory)

    def data_state(self) -> dict[str, Any]:
        """The prompt stream, KL controller and every rank's buffer and queue (collective)."""
        local = {"prompts": self.prompts.state_dict(), "buffer": self.buffer, "queue": self.queue}
        return {
            "ranks": all_gather_objects(local, self.ctx), "kl_ctl": self.kl_ctl.state_dict(),
            "rollouts": self.rollouts, "rollout_stats": self.rollout_stats,
        }  # fmt: skip

    def load_data_state(self, state: dict[str, Any]) -> None:
        ranks = state["ranks"]
        if len(ranks) != self.ctx.world_size:
            raise ValueError(
                f"the checkpoint was written by {len(ranks)} process(es), now {self.ctx.world_size}; resume a PPO "
                "run with the same number of processes"
            )
        local = ranks[self.ctx.rank]
        self.prompts.load_state_dict(local["prompts"])
        self.buffer, self.queue = dict(local["buffer"]), [list(q) for q in local["queue"]]
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        self.rollouts, self.rollout_stats = int(state["rollouts"]), dict(state["rollout_stats"])

    # ------------------------------------------------------------------ logs, evaluation, summary
    def step_metrics(self) -> dict[str, Any]:
        """The rollout's statistics and the step's token-weighted loss statistics (summed over ranks)."""
        values = [self._sums[k] for k in LOSS_STATS] + [float(self._tokens)]
        reduced = all_reduce_sum(torch.tensor(values, dtype=torch.float64, device=self.device), self.ctx).tolist()
        tokens = reduced[-1]
        self._sums, self._tokens = dict.fromkeys(LOSS_STATS, 0.0), 0
        step = {k: (v / tokens if tokens else math.nan) for k, v in zip(LOSS_STATS, reduced, strict=False)}
        return {**self.rollout_stats, **step, "rollout": self.rollouts}

    @property
    def can_evaluate(self) -> bool:
        return bool(self.val_prompts)

    def evaluate(self) -> dict[str, float]:
        """Reward, KL to the reference and length of fresh samples on the held-out prompts (split over ranks;
        a private seeded generator, so training's random stream is untouched)."""
        mine = self.val_prompts[self.ctx.rank :: self.ctx.world_size]
        samples: list[dict[str, Any]] = []
        if mine:
            result = evaluate_policy(
                self.raw_model.policy, self.reference, mine, self.reward_fn, tokenizer=self.tokenizer,
                sampling=self.sampling, eos_ids=self.eos_ids, pad_id=self.pad_id,
                batch_size=self.score_batch_size or 16, seed=self.tc.seed,
            )  # fmt: skip
            samples = result.samples
        every = [s for part in all_gather_objects(samples, self.ctx) for s in part]
        n = max(1, len(every))
        return {
            "val_reward": sum(s["reward"] for s in every) / n, "val_kl": sum(s["kl"] for s in every) / n,
            "val_response_length": sum(s["length"] for s in every) / n,
        }  # fmt: skip

    def describe_row(self, row: dict[str, Any]) -> str | None:
        msg = f"iter {row['iter']}: reward {row['reward']:.4f}, kl {row['kl']:.4f}, kl_coef {row['kl_coef']:.4f}"
        msg += f", clip_frac {row['clip_frac']:.3f}, value_loss {row['value_loss']:.4f}"
        msg += f", length {row['response_length']:.1f}"
        if row.get("val_reward") is not None:
            msg += f", val_reward {row['val_reward']:.4f}, val_kl {row['val_kl']:.4f}"
        return msg

    def summary(self) -> dict[str, Any]:
        stats = self.rollout_stats
        return {
            "rollouts": self.rollouts, "final_reward": stats.get("reward"), "final_kl": stats.get("kl"),
            "final_kl_coef": self.kl_ctl.value, "final_response_length": stats.get("response_length"),
        }  # fmt: skip
