"""Evaluate an aligned policy on held-out prompts: its mean reward, its KL divergence from the reference and the
length of what it writes — the two axes of the reward-vs-KL frontier (Gao et al. 2022, "Scaling Laws for Reward
Model Overoptimization", https://arxiv.org/abs/2210.10760; the DPO paper's Figure 2,
https://arxiv.org/abs/2305.18290) plus the length check against reward hacking by verbosity.

    result = evaluate_policy(policy, ReferencePolicy(policy), prompts, reward_fn, tokenizer=tokenizer,
                             sampling=SamplingConfig(temperature=1.0, max_new_tokens=48), eos_ids=[2], pad_id=0)
    result.reward_mean, result.kl_mean, result.length_mean, result.samples[:3]

The KL is the Monte-Carlo estimate of the sequence-level KL(policy || reference): for completions y sampled
from the policy, ``sum_t log pi(y_t | x, y_<t) - log pi_ref(y_t | x, y_<t)`` averaged over samples (unbiased;
a single sample can be negative). Log-probabilities are taken at the sampling temperature (the distribution the
samples come from; temperature 0 = greedy scores at temperature 1, and the "KL" is then only the log-ratio of
the greedy completion).

Sampling uses a private generator seeded with `seed` (one per batch), so the evaluation is reproducible and
leaves torch's global random state untouched: a training run that evaluates continues exactly as one that does
not, and a resumed run matches an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from llmlab.align.logprobs import token_logprobs, unwrap
from llmlab.align.reference import ReferencePolicy
from llmlab.align.rollout import Rollout, sample_rollout
from llmlab.config.sampling import SamplingConfig


@dataclass
class PolicyEval:
    """What `evaluate_policy` measured (means over all sampled completions, with their standard errors).

    Attributes:
        reward_mean / reward_stderr: the reward.
        kl_mean / kl_stderr: the Monte-Carlo sequence KL(policy || reference) in nats (0 without a reference).
        length_mean: response tokens (EOS included when produced).
        samples: one dict per completion: prompt, completion, reward, kl, length (prompt order; the
            `samples_per_prompt` completions of a prompt consecutive).
    """

    reward_mean: float
    reward_stderr: float
    kl_mean: float
    kl_stderr: float
    length_mean: float
    samples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self, prefix: str = "") -> dict[str, float]:
        """The scalar figures as a flat dict (e.g. ``prefix="val_"`` for a training log row)."""
        names = ("reward_mean", "reward_stderr", "kl_mean", "kl_stderr", "length_mean")
        return {f"{prefix}{n}": getattr(self, n) for n in names}


def _mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for fewer than two values)."""
    t = torch.tensor(list(values), dtype=torch.float64)
    if t.numel() == 0:
        return math.nan, math.nan
    stderr = float(t.std(unbiased=True) / math.sqrt(t.numel())) if t.numel() > 1 else 0.0
    return float(t.mean()), stderr


def completion_texts(rollout: Rollout, tokenizer: Any, eos_ids: Sequence[int]) -> list[str]:
    """Each row's response decoded, without the final EOS token (the text a reward function judges)."""
    eos = set(eos_ids)
    texts = []
    for ids in rollout.responses():
        if ids and ids[-1] in eos:
            ids = ids[:-1]
        texts.append(tokenizer.decode(ids, skip_special_tokens=True))
    return texts


@torch.no_grad()
def evaluate_policy(
    policy: nn.Module,
    reference: ReferencePolicy | None,
    prompts: Sequence[Any],
    reward_fn: Callable[..., Any],
    *,
    tokenizer: Any,
    sampling: SamplingConfig,
    eos_ids: Sequence[int],
    pad_id: int,
    samples_per_prompt: int = 1,
    batch_size: int = 16,
    seed: int = 0,
) -> PolicyEval:
    """Sample completions of `prompts` from `policy` and measure reward, KL to `reference` and length.

    Args:
        policy: the policy (unwrapped or DDP-wrapped; run in eval mode, its mode restored after).
        reference: the reference policy (`ReferencePolicy`); None = no KL (reported as 0).
        prompts: `llmlab.data.preference.PromptRecord`s (``prompt_ids``, ``text``, ``record``).
        reward_fn: ``(prompts: list[str], completions: list[str], records: list[dict]) -> (N,) floats``, e.g.
            `llmlab.align.rewards.RewardSources`.
        tokenizer: decodes the completions for `reward_fn`.
        sampling: how to sample (its ``seed`` is replaced by `seed`; temperature 0 = greedy).
        eos_ids: ids that end a completion.
        pad_id: the padding id.
        samples_per_prompt: completions per prompt.
        batch_size: prompts generated and scored at once.
        seed: seeds the private generator (batch i uses ``seed + i``).
    """
    if samples_per_prompt < 1 or batch_size < 1:
        raise ValueError(f"samples_per_prompt and batch_size must be >= 1, got {samples_per_prompt}, {batch_size}")
    model = unwrap(policy)
    device = next(model.parameters()).device
    temperature = sampling.temperature if sampling.temperature > 0 else 1.0
    rewards: list[float] = []
    kls: list[float] = []
    lengths: list[int] = []
    samples: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    try:
        for b, start in enumerate(range(0, len(prompts), batch_size)):
            batch = list(prompts[start : start + batch_size])
            rollout = sample_rollout(
                model, [p.prompt_ids for p in batch], n_per_prompt=samples_per_prompt,
                sampling=dataclasses.replace(sampling, seed=seed + b), eos_ids=eos_ids, pad_id=pad_id,
            ).to(device)  # fmt: skip
            ids, attn, resp = rollout.input_ids, rollout.attention_mask, rollout.response_mask
            logp = token_logprobs(model, ids, attn, resp, temperature=temperature).logprobs  # (N, T)
            if reference is not None:
                ref_logp = reference.token_logprobs(ids, attn, resp, temperature=temperature).logprobs
                row_kl = (logp - ref_logp).sum(-1).tolist()  # (N,) sequence log-ratio
            else:
                row_kl = [0.0] * ids.size(0)
            texts = [batch[i].text for i in rollout.prompt_index.tolist()]
            records = [batch[i].record for i in rollout.prompt_index.tolist()]
            completions = completion_texts(rollout, tokenizer, eos_ids)
            row_reward = torch.as_tensor(reward_fn(texts, completions, records), dtype=torch.float32).reshape(-1)
            if row_reward.numel() != len(completions):
                raise ValueError(f"the reward function returned {row_reward.numel()} values for {len(completions)}")
            for j, completion in enumerate(completions):
                length = int(rollout.response_lengths[j])
                rewards.append(float(row_reward[j]))
                kls.append(float(row_kl[j]))
                lengths.append(length)
                samples.append({"prompt": texts[j], "completion": completion, "reward": rewards[-1],
                                "kl": kls[-1], "length": length})  # fmt: skip
    finally:
        model.train(was_training)
    reward_mean, reward_stderr = _mean_stderr(rewards)
    kl_mean, kl_stderr = _mean_stderr(kls)
    length_mean = sum(lengths) / len(lengths) if lengths else math.nan
    return PolicyEval(reward_mean, reward_stderr, kl_mean, kl_stderr, length_mean, samples)
