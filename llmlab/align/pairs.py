"""Preference pairs built by sampling: the DPO paper's construction for controlled sentiment generation
(Rafailov et al. 2023, https://arxiv.org/abs/2305.18290, section 6.1): sample several completions of every
prompt from the starting policy, score them with a reward (a classifier, a reward model or a verifiable
function), and keep the best as ``chosen`` and the worst as ``rejected``.

    pairs = build_pairs_by_sampling(policy, tokenizer, prompts, reward_fn, sampling=SamplingConfig(
        temperature=1.0, max_new_tokens=32), eos_ids=stop_ids, pad_id=pad, n_samples=4, seed=0)
    write_jsonl("pairs.jsonl", pairs)     # then: llmlab align dpo data.train=pairs.jsonl

Each pair keeps the record's own ``prompt`` (string or messages), so ``llmlab align dpo`` renders it exactly as
the prompt file did; ``chosen``/``rejected`` are the completion texts (end-of-turn tokens removed: the data
loader adds the template's own ending).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from llmlab.align.rollout import sample_rollout
from llmlab.config.sampling import SamplingConfig

RewardFn = Callable[[list[str], list[str], list[dict[str, Any]]], Any]  # (prompts, completions, records) -> (N,)


def completion_text(tokenizer: Any, ids: Sequence[int], stop_ids: Sequence[int]) -> str:
    """The text of a sampled response, without the stop token that ended it."""
    ids = list(ids)
    while ids and ids[-1] in stop_ids:
        ids.pop()
    return tokenizer.decode(ids, skip_special_tokens=True)


@torch.no_grad()
def build_pairs_by_sampling(
    policy: nn.Module,
    tokenizer: Any,
    prompts: Sequence[Any],
    reward_fn: RewardFn,
    *,
    sampling: SamplingConfig,
    eos_ids: Sequence[int],
    pad_id: int,
    n_samples: int = 2,
    seed: int = 0,
    batch_size: int | None = None,
) -> list[dict[str, Any]]:
    """Sample `n_samples` completions per prompt, rank them by `reward_fn`, keep (best, worst) per prompt.

    Args:
        policy: the model that samples (the policy DPO starts from; unwrapped, on its device).
        tokenizer: decodes the completions.
        prompts: `llmlab.data.preference.PromptRecord`s (their `prompt_ids`, `text` and `record`).
        reward_fn: ``(prompt texts, completion texts, records) -> (N,)`` rewards (a list or tensor), e.g.
            `llmlab.align.rewards.RewardSources` or a reward model's ``lambda p, c, r: scorer.score(p, c)``.
        sampling: temperature / top-k / top-p / max_new_tokens.
        eos_ids: ids that end a completion (the template's end-of-turn tokens and EOS).
        pad_id: the padding id.
        n_samples: completions per prompt (>= 2).
        seed: seeds the sampling (the global torch generator is left as it was).
        batch_size: rows generated at once (None: all).

    Returns:
        One dict per prompt whose best and worst completions differ in reward and text: ``prompt`` (the record's
        own), ``chosen``, ``rejected``, ``chosen_reward``, ``rejected_reward`` — ready for a preference JSONL file.
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2 to rank completions against each other, got {n_samples}")
    if not prompts:
        return []
    device = next(policy.parameters()).device
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        rollout = sample_rollout(
            policy, [p.prompt_ids for p in prompts], n_per_prompt=n_samples, sampling=sampling, eos_ids=eos_ids,
            pad_id=pad_id, batch_size=batch_size,
        )  # fmt: skip
    stops = set(eos_ids)
    completions = [completion_text(tokenizer, r, stops) for r in rollout.responses()]
    rows = [prompts[int(i)] for i in rollout.prompt_index]
    rewards = torch.as_tensor(reward_fn([p.text for p in rows], completions, [p.record for p in rows]))
    rewards = rewards.detach().float().cpu().view(len(prompts), n_samples)  # (P, n): rows of a prompt are consecutive
    pairs = []
    for i, prompt in enumerate(prompts):
        best, worst = int(rewards[i].argmax()), int(rewards[i].argmin())
        chosen, rejected = completions[i * n_samples + best], completions[i * n_samples + worst]
        if rewards[i, best] <= rewards[i, worst] or chosen == rejected or not chosen.strip() or not rejected.strip():
            continue  # a tie (or empty text) carries no preference
        pairs.append({
            "prompt": prompt.record.get("prompt", prompt.text), "chosen": chosen, "rejected": rejected,
            "chosen_reward": float(rewards[i, best]), "rejected_reward": float(rewards[i, worst]),
        })  # fmt: skip
    return pairs
