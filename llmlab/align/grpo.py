"""GRPO's two formulas: group-relative advantages and the clipped surrogate loss with a k3 KL penalty.

Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, https://arxiv.org/abs/2402.03300) samples a
group of G completions per prompt and uses each completion's reward relative to its group as the advantage of
every one of its tokens — no value model::

    A_i = (r_i - mean(r_group)) / (std(r_group) + 1e-4)        (std: unbiased; scale=False drops the division,
                                                                as Dr. GRPO, https://arxiv.org/abs/2503.20783)
    ratio_t = exp(logp_t - logp_old_t)                          (1 with one pass over each rollout)
    loss_t  = -min(ratio_t A, clip(ratio_t, 1 - eps, 1 + eps) A) + beta * kl_t
    kl_t    = exp(ref_t - logp_t) - (ref_t - logp_t) - 1        (the "k3" estimator, http://joschu.net/blog/kl-approx.html)

and averages ``loss_t`` over the response tokens in one of three ways (``loss_type``):

- ``grpo``: over each sequence's tokens, then over sequences (the paper's 1/|o_i| normalisation);
- ``bnpo``: over all tokens of the batch;
- ``dr_grpo``: the sum divided by rows x max_new_tokens (a constant: no length bias).

The formulas are those of trl 1.16's ``GRPOTrainer._compute_loss`` (token-level importance sampling, symmetric
clipping; tested for equality in tests/align/test_grpo.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

GRPO_LOSS_TYPES = ("grpo", "bnpo", "dr_grpo")
STD_EPS = 1e-4  # added to the group std (trl's constant)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """Each reward minus its group's mean, divided by the group's std (+1e-4) when `scale`.

    Args:
        rewards: (N,) rewards, the `group_size` completions of each prompt consecutive.
        group_size: G, completions per prompt (N must be a multiple).

    Returns:
        (N,) float32 advantages (0 for every member of a group whose rewards are all equal).
    """
    rewards = rewards.float().reshape(-1)
    if group_size < 2 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not form groups of {group_size} (need group_size >= 2)")
    groups = rewards.view(-1, group_size)  # (P, G)
    adv = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        adv = adv / (groups.std(dim=1, unbiased=True, keepdim=True) + STD_EPS)
    return adv.reshape(-1)


@dataclass
class GRPOLoss:
    """`loss` (scalar, with grad) and detached diagnostics: `kl` (mean k3 KL per response token; 0 when beta = 0),
    `clip_frac` (share of response tokens whose ratio was clipped in the direction of their advantage),
    `policy_loss` (the loss without the KL term)."""

    loss: torch.Tensor
    kl: torch.Tensor
    clip_frac: torch.Tensor
    policy_loss: torch.Tensor


def _reduce(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str, max_completion_length: int) -> torch.Tensor:
    """The mean of `per_token` (B, T) over the response tokens `mask`, as `loss_type` defines it."""
    if loss_type == "grpo":
        return ((per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1.0)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (per_token.size(0) * max_completion_length)
    raise ValueError(f"unknown GRPO loss type {loss_type!r}; choose one of: {', '.join(GRPO_LOSS_TYPES)}")


def grpo_loss(
    logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    *,
    old_logprobs: torch.Tensor | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
    epsilon: float = 0.2,
    loss_type: str = "grpo",
    max_completion_length: int | None = None,
) -> GRPOLoss:
    """The GRPO loss of a batch of rows (see the module docstring).

    Args:
        logprobs: (B, T) the policy's log-probs of the tokens (with grad), aligned with `mask`.
        advantages: (B,) one advantage per row (`group_advantages`).
        mask: (B, T) 1 on response tokens.
        old_logprobs: (B, T) the log-probs of the policy that sampled the rows (None: ``logprobs.detach()``,
            i.e. ratio 1 — the first pass over a rollout).
        ref_logprobs: (B, T) the reference's log-probs (needed when beta > 0).
        beta: KL coefficient.
        epsilon: ratio clip.
        loss_type: grpo | bnpo | dr_grpo.
        max_completion_length: rollout.max_new_tokens (dr_grpo's constant normaliser).
    """
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"unknown GRPO loss type {loss_type!r}; choose one of: {', '.join(GRPO_LOSS_TYPES)}")
    if loss_type == "dr_grpo" and not max_completion_length:
        raise ValueError("loss_type dr_grpo needs max_completion_length (rollout.max_new_tokens)")
    if beta != 0.0 and ref_logprobs is None:
        raise ValueError("beta > 0 needs the reference log-probs (ref_logprobs)")
    mask = mask.to(logprobs.dtype)
    old = logprobs.detach() if old_logprobs is None else old_logprobs
    adv = advantages.to(logprobs.dtype).unsqueeze(1)  # (B, 1)
    ratio = torch.exp(logprobs - old)  # (B, T)
    clipped = torch.clamp(ratio, 1 - epsilon, 1 + epsilon)
    per_token = -torch.min(ratio * adv, clipped * adv)
    policy_loss = _reduce(per_token, mask, loss_type, max_completion_length or 0)
    kl_mean = torch.zeros((), device=logprobs.device)
    if beta != 0.0:
        assert ref_logprobs is not None
        delta = ref_logprobs - logprobs
        per_token_kl = torch.exp(delta) - delta - 1  # (B, T) k3, >= 0
        per_token = per_token + beta * per_token_kl
        kl_mean = ((per_token_kl * mask).sum() / mask.sum().clamp(min=1.0)).detach()
    loss = _reduce(per_token, mask, loss_type, max_completion_length or 0)
    is_clipped = ((ratio < 1 - epsilon) & (adv < 0)) | ((ratio > 1 + epsilon) & (adv > 0))
    clip_frac = (is_clipped.to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1.0)
    return GRPOLoss(loss=loss, kl=kl_mean, clip_frac=clip_frac.detach(), policy_loss=policy_loss.detach())
