"""`GRPOTrainer`: the training loop of ``llmlab align grpo`` (`llmlab.align.grpo` for the formulas).

One rollout = ``grpo.prompts_per_step`` prompts (per rank) x ``grpo.num_generations`` sampled completions. For each
rollout the trainer scores the completions (`llmlab.align.rewards.RewardSources`), turns the rewards into group
advantages and, once, computes the log-probs it needs besides the policy's own: the sampling policy's (only
when ``num_iterations > 1``: later passes are off-policy and the ratio is clipped) and the reference's (only when
``beta > 0``: with beta 0 no reference is built at all). The rollout's rows are then split into minibatches of
``grpo.minibatch_size`` rows, visited ``num_iterations`` times; each `next_batch` pops one, so one optimizer step
takes ``train.grad_accum`` minibatches and ``train.max_iters`` counts optimizer steps (as PPO).

The un-consumed minibatches are part of the checkpoint (`data_state`), together with the prompt stream and the
rollout's statistics, and sampling draws from the global RNG the trainer checkpoints: a resumed run is
bit-identical to one that never stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.align.evaluate import completion_texts, evaluate_policy
from llmlab.align.grpo import group_advantages, grpo_loss
from llmlab.align.logprobs import token_logprobs
from llmlab.align.reference import ReferencePolicy
from llmlab.align.rewards import REWARD_FUNCTIONS
from llmlab.align.rollout import sample_rollout
from llmlab.config.sampling import SamplingConfig
from llmlab.data.preference import PromptRecord, PromptStream
from llmlab.train.distributed import all_reduce_mean
from llmlab.train.sft_loop import save_trainable
from llmlab.train.trainer import Trainer

EXACT_ANSWER_REWARDS = ("arithmetic", "arithmetic_final")  # their mean is an accuracy (logged as such)
ROLLOUT_STATS = ("reward", "reward_std", "response_length", "ended")


class GRPOTrainer(Trainer):
    """GRPO on a policy (see the module docstring).

    Args:
        model: the policy (unwrapped, trainable parameters set).
        cfg: the run's `AlignConfig` (grpo, rollout, train, optim, schedule sections).
        stream: this rank's `PromptStream` over the training prompts.
        reward_fn: `RewardSources` (``(prompts, completions, records, ended=) -> (N,)`` with ``last_breakdown``).
        tokenizer: decodes completions for the reward.
        reference: the reference policy (None when ``grpo.beta == 0``).
        sampling / eos_ids / pad_id: how completions are sampled.
        val_prompts: held-out prompts for `evaluate` (greedy-free: sampled with a fixed private seed).
        **kwargs: the `Trainer` keywords (out_dir, ctx, device, resume_state, run_info, say, ...).
    """

    fit_warmup_to_run = True

    def __init__(
        self,
        model: nn.Module,
        cfg: Any,
        stream: PromptStream,
        reward_fn: Callable[..., torch.Tensor],
        tokenizer: Any,
        reference: ReferencePolicy | None,
        sampling: SamplingConfig,
        eos_ids: list[int],
        pad_id: int,
        *,
        out_dir: str | Path,
        val_prompts: list[PromptRecord] | None = None,
        **kwargs: Any,
    ) -> None:
        self.g, self.stream, self.reward_fn, self.tokenizer = cfg.grpo, stream, reward_fn, tokenizer
        self.reference, self.sampling, self.eos_ids, self.pad_id = reference, sampling, list(eos_ids), pad_id
        self.max_new_tokens, self.rollout_batch = cfg.rollout.max_new_tokens, cfg.rollout.batch_size or None
        self.val_prompts = val_prompts or []
        if self.g.beta > 0 and reference is None:
            raise ValueError("grpo.beta > 0 needs a reference policy")
        self.buffer: list[dict[str, torch.Tensor]] = []
        self.rollout_stats: dict[str, float] = {}
        self._step_stats: list[dict[str, torch.Tensor]] = []
        super().__init__(model, cfg.train, cfg.optim, cfg.schedule, out_dir, **kwargs)
        if self.reference is not None:
            self.reference.to(self.device)

    # ------------------------------------------------------------------ rollouts
    @torch.no_grad()
    def _make_rollout(self) -> None:
        """Sample, score and split one rollout into the minibatch buffer."""
        prompts = self.stream.next_batch()
        group = self.g.num_generations
        rollout = sample_rollout(
            self.raw_model, [p.prompt_ids for p in prompts], n_per_prompt=group, sampling=self.sampling,
            eos_ids=self.eos_ids, pad_id=self.pad_id, batch_size=self.rollout_batch,
        )  # fmt: skip
        index = rollout.prompt_index.tolist()
        texts = [prompts[i].text for i in index]
        records = [prompts[i].record for i in index]
        completions = completion_texts(rollout, self.tokenizer, self.eos_ids)
        rewards = self.reward_fn(texts, completions, records, ended=rollout.ended).float().reshape(-1)  # (N,)
        advantages = group_advantages(rewards, group, scale=self.g.scale_rewards)  # (N,)
        rows = rollout.to(self.device)
        ids, attn, resp = rows.input_ids, rows.attention_mask, rows.response_mask
        batch = {"input_ids": ids, "attention_mask": attn, "response_mask": resp, "advantages": advantages}
        if self.g.num_iterations > 1:  # later passes are off-policy: keep the sampling policy's log-probs
            batch["old_logprobs"] = token_logprobs(self.raw_model, ids, attn, resp, temperature=self._temp).logprobs
        if self.reference is not None:
            batch["ref_logprobs"] = self.reference.token_logprobs(ids, attn, resp, temperature=self._temp).logprobs
        batch = {k: v.cpu() for k, v in batch.items()}
        n = ids.size(0)
        size = self.g.minibatch_size or n
        for _ in range(self.g.num_iterations):
            for s in range(0, n, size):
                self.buffer.append(_trim({k: v[s : s + size] for k, v in batch.items()}))
        groups = rewards.view(-1, group)
        stats = {
            "reward": float(rewards.mean()), "reward_std": float(groups.std(dim=1).mean()),
            "response_length": float(rollout.response_lengths.float().mean()),
            "ended": float(rollout.ended.float().mean()),
        }  # fmt: skip
        breakdown = dict(getattr(self.reward_fn, "last_breakdown", {}))
        checks = [f"reward_{name}" for name in EXACT_ANSWER_REWARDS if f"reward_{name}" in breakdown]
        if checks:
            breakdown["accuracy"] = breakdown[checks[0]]
        self.rollout_stats = stats | breakdown

    @property
    def _temp(self) -> float:
        return self.sampling.temperature if self.sampling.temperature > 0 else 1.0

    # ------------------------------------------------------------------ Trainer hooks
    def next_batch(self) -> dict[str, torch.Tensor]:
        if not self.buffer:
            self._make_rollout()
        return self.buffer.pop(0)

    def loss_units(self, batch: dict[str, torch.Tensor]) -> int:
        if self.g.loss_type == "bnpo":
            return int(batch["response_mask"].sum())
        return int(batch["input_ids"].size(0))

    def batch_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum())

    def batch_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        ids, attn, resp = batch["input_ids"], batch["attention_mask"], batch["response_mask"]
        logp = token_logprobs(self.raw_model, ids, attn, resp, temperature=self._temp, call=self.model).logprobs
        out = grpo_loss(
            logp, batch["advantages"], resp, old_logprobs=batch.get("old_logprobs"),
            ref_logprobs=batch.get("ref_logprobs"), beta=self.g.beta, epsilon=self.g.epsilon,
            loss_type=self.g.loss_type, max_completion_length=self.max_new_tokens,
        )  # fmt: skip
        self._step_stats.append({"kl": out.kl, "clip_frac": out.clip_frac, "policy_loss": out.policy_loss})
        return out.loss

    def step_metrics(self) -> dict[str, Any]:
        stats, self._step_stats = self._step_stats, []
        names = ("kl", "clip_frac", "policy_loss")
        local = torch.stack([torch.stack([s[n].float() for s in stats]).mean() for n in names])
        keys = sorted(self.rollout_stats)
        rollout = torch.tensor([self.rollout_stats[k] for k in keys], dtype=torch.float32, device=local.device)
        reduced = all_reduce_mean(torch.cat([local, rollout]), self.ctx).tolist()
        return dict(zip([*names, *keys], reduced, strict=True))

    def describe_row(self, row: dict[str, Any]) -> str | None:
        msg = f"iter {row['iter']}: loss {row['loss']:.4f}, reward {row['reward']:.3f} (std {row['reward_std']:.3f})"
        msg += f", kl {row['kl']:.4f}, clip {row['clip_frac']:.3f}, length {row['response_length']:.1f}"
        if "accuracy" in row:
            msg += f", accuracy {row['accuracy']:.3f}"
        if row.get("val_reward") is not None:
            msg += f", val_reward {row['val_reward']:.3f}, val_kl {row['val_kl']:.3f}"
        return msg

    @property
    def can_evaluate(self) -> bool:
        return bool(self.val_prompts)

    def evaluate(self) -> dict[str, float]:
        """Mean reward, KL and length on the held-out prompts (a private seeded generator: the run's RNG stays)."""
        result = evaluate_policy(
            self.raw_model, self.reference, self.val_prompts, self.reward_fn, tokenizer=self.tokenizer,
            sampling=self.sampling, eos_ids=self.eos_ids, pad_id=self.pad_id,
            batch_size=max(1, self.tc.eval_batch_size), seed=self.tc.seed,
        )  # fmt: skip
        out = {"val_reward": result.reward_mean, "val_kl": result.kl_mean, "val_response_length": result.length_mean}
        checks = [n for n in EXACT_ANSWER_REWARDS if n in getattr(self.reward_fn, "names", ())]
        if checks:  # the exact-answer rate alone
            completions = [s["completion"] for s in result.samples]
            correct = REWARD_FUNCTIONS[checks[0]]([], completions, [p.record for p in self.val_prompts])
            out["val_accuracy"] = sum(correct) / max(1, len(correct))
        return out

    def save_weights(self, directory: Path) -> None:
        save_trainable(self.raw_model, directory)

    def data_state(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "buffer": list(self.buffer), "rollout_stats": self.rollout_stats}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.buffer = list(state["buffer"])
        self.rollout_stats = dict(state["rollout_stats"])

    def summary(self) -> dict[str, Any]:
        return {f"final_{k}": v for k, v in self.rollout_stats.items()}


def _trim(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the padding columns every row of a minibatch shares (the rollout is padded to its longest row)."""
    width = int(batch["attention_mask"].sum(-1).max())
    return {k: (v[:, :width] if v.dim() == 2 else v) for k, v in batch.items()}
