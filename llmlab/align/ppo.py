"""The pieces of PPO for language models (RLHF): a value head on the policy, KL-penalised per-token rewards,
generalised advantage estimation, whitening, KL controllers and the clipped PPO losses.

Formulas follow trl's PPOTrainer (``compute_rewards``, ``compute_advantages``, ``loss``, ``masked_whiten`` and
``AdaptiveKLController`` of trl <= 0.11's ``trl/trainer/ppo_trainer.py`` and ``trl/core.py``; trl 1.x dropped its
PPO trainer), which follow Ziegler et al. 2019 (https://arxiv.org/abs/1909.08593) and the PPO paper
(Schulman et al. 2017, https://arxiv.org/abs/1707.06347). Every tensor here is laid out like
`llmlab.align.logprobs`: (B, T) rows of ``prompt + response`` (right-padded), aligned with the TOKENS, and a
``mask`` that is 1 on the response tokens (the actions). Column t's value is V(state before token t), its
log-probability log pi(token t | < t), so one forward pass gives both at the same positions.

One rollout, per row::

    kl_t      = logp_t - ref_logp_t                       (the k1 estimator, per response token)
    r_t       = -kl_coef * kl_t   (+ score at the last response token)
    delta_t   = r_t + gamma * V_{t+1} - V_t               (V = 0 after the last response token)
    A_t       = delta_t + gamma * lam * A_{t+1}           (GAE, Schulman et al. 2015, https://arxiv.org/abs/1506.02438)
    return_t  = A_t + V_t;  A <- whiten(A) over the rollout

and the loss of a minibatch (masked means over its response tokens)::

    ratio = exp(logp - old_logp)
    policy_loss = mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))
    value_loss  = 0.5 * mean(max((V - R)^2, (clip(V, V_old - eps_v, V_old + eps_v) - R)^2))
    loss        = policy_loss + vf_coef * value_loss
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.align.logprobs import forward_kwargs, unwrap


# ---------------------------------------------------------------------------------------------- value head
class ValueHead(nn.Module):
    """A scalar value per position from the policy's final hidden states: Linear(C, 1) in float32 (trl's
    ``ValueHead``, without its dropout).

    Args:
        hidden_size: the width C of the policy's hidden states.
        init_std: std of the initial weights (0 = zeros: every value starts at 0).
    """

    def __init__(self, hidden_size: int, init_std: float = 0.0) -> None:
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1, dtype=torch.float32)
        with torch.no_grad():
            if init_std > 0:
                self.summary.weight.normal_(0.0, init_std)
            else:
                self.summary.weight.zero_()
            self.summary.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., C) hidden states -> (...) float32 values."""
        return self.summary(hidden.float()).squeeze(-1)


@dataclass
class PolicyValueOutput:
    """(B, T) float32 tensors aligned with the tokens, 0 outside the response: `logprobs` of the tokens,
    `entropy` of each predictive distribution, `values` V(state before the token)."""

    logprobs: torch.Tensor
    entropy: torch.Tensor
    values: torch.Tensor


class PolicyWithValue(nn.Module):
    """The policy (an llmlab causal LM, full or with PEFT layers) and a trainable `ValueHead` sharing its backbone.

    One forward pass gives the log-probabilities, entropies and values of the response tokens; only the
    response positions go through the LM head and the value head. The policy alone is what a run exports
    (`policy`); a checkpoint holds the policy's trainable weights and the value head.

    Args:
        policy: the llmlab causal LM (with `lm_head`, `embed_tokens` and ``output_hidden_states``).
        value_head_init_std: std of the value head's initial weights (0 = zeros).
    """

    def __init__(self, policy: nn.Module, value_head_init_std: float = 0.0) -> None:
        super().__init__()
        self.policy = policy
        self.config = getattr(policy, "config", None)
        width = policy.embed_tokens.embedding_dim
        device = next(policy.parameters()).device
        self.value_head = ValueHead(width, value_head_init_std).to(device)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_mask: torch.Tensor,
        temperature: float = 1.0,
    ) -> PolicyValueOutput:
        """Score the response tokens of right-padded (B, T) rows (see the class docstring)."""
        response = response_mask.bool()
        if bool(response[:, 0].any()):
            raise ValueError("response_mask marks column 0, which has no preceding position to predict it from")
        select = torch.zeros_like(response)
        select[:, :-1] = response[:, 1:]  # (B, T) positions whose hidden state predicts a response token
        out = self.policy(
            input_ids, output_hidden_states=True, logits_to_keep=1, **forward_kwargs(self.policy, attention_mask)
        )
        hidden = out.hidden_states[select]  # (N, C) row-major, like the response tokens
        logits = self.policy.lm_head(hidden).float() / temperature  # (N, V)
        logp_all = F.log_softmax(logits, dim=-1)  # (N, V)
        picked = logp_all.gather(-1, input_ids[response][:, None]).squeeze(-1)  # (N,)
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (N,)
        values = self.value_head(hidden)  # (N,)
        zeros = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)  # (B, T)
        return PolicyValueOutput(
            logprobs=zeros.masked_scatter(response, picked),
            entropy=zeros.masked_scatter(response, entropy),
            values=zeros.masked_scatter(response, values),
        )


def policy_of(model: nn.Module) -> nn.Module:
    """The policy inside a (possibly DDP-wrapped) `PolicyWithValue`."""
    return unwrap(model).policy  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------- statistics
def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is 1 (a scalar)."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum()


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of `values` where `mask` is 1 (Bessel-corrected unless `unbiased` is False), as trl."""
    mask = mask.to(values.dtype)
    count = mask.sum()
    var = masked_mean((values - masked_mean(values, mask)) ** 2, mask)
    if unbiased:
        if count < 2:
            raise ValueError("whitening needs at least 2 response tokens in the rollout; sample more prompts")
        var = var * count / (count - 1)
    return var


def whiten(values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(values - mean) / std over the masked entries (trl's ``masked_whiten``: unbiased variance, eps 1e-8);
    ``shift_mean=False`` adds the mean back (scale only). Entries outside the mask are set to 0."""
    mean, var = masked_mean(values, mask), masked_var(values, mask)
    out = (values - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask.to(values.dtype)


# ---------------------------------------------------------------------------------------------- rewards, GAE
def kl_penalised_rewards(
    scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards of Ziegler et al. 2019: ``-kl_coef * (logp - ref_logp)`` at every response token, plus
    the sequence's score at its last response token.

    Args:
        scores: (B,) the reward of each completion.
        logprobs / ref_logprobs: (B, T) the sampling policy's and the reference's log-probabilities.
        mask: (B, T) 1 on response tokens (each row needs at least one).
        kl_coef: the KL penalty coefficient.

    Returns:
        (rewards (B, T), kl (B, T)), both 0 outside the mask; ``kl.sum(-1)`` is each sequence's KL estimate.
    """
    m = mask.to(torch.float32)
    if bool((m.sum(-1) == 0).any()):
        raise ValueError("a rollout row has no response token; every completion needs at least one token")
    kl = (logprobs - ref_logprobs) * m  # (B, T)
    rewards = -kl_coef * kl
    positions = torch.arange(mask.shape[1], device=mask.device)  # (T,)
    last = (positions * mask.long()).argmax(-1)  # (B,) the last response token of each row
    rewards[torch.arange(mask.shape[0], device=mask.device), last] += scores.to(rewards.dtype)
    return rewards, kl


def compute_gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each row's response tokens (Schulman et al. 2015,
    https://arxiv.org/abs/1506.02438), as trl's ``compute_advantages`` (before whitening).

    Args:
        rewards / values: (B, T) per-token rewards and values (only the masked entries are read).
        mask: (B, T) 1 on the response tokens (contiguous per row; the value after the last one is 0).
        gamma / lam: the discount and the GAE lambda.

    Returns:
        (advantages (B, T), returns (B, T) = advantages + values), 0 outside the mask.
    """
    m = mask.to(torch.float32)
    values, rewards = values.float() * m, rewards.float() * m
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])  # (B,) A_{t+1}
    width = rewards.shape[1]
    for t in reversed(range(width)):
        next_values = values[:, t + 1] if t + 1 < width else torch.zeros_like(last)  # 0 past the response
        next_mask = m[:, t + 1] if t + 1 < width else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_values - values[:, t]
        last = (delta + gamma * lam * last * next_mask) * m[:, t]
        advantages[:, t] = last
    return advantages, (advantages + values) * m


# ---------------------------------------------------------------------------------------------- KL control
class FixedKLController:
    """A constant KL coefficient."""

    def __init__(self, kl_coef: float) -> None:
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Nothing changes."""

    def state_dict(self) -> dict[str, float]:
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.value = float(state["value"])


class AdaptiveKLController(FixedKLController):
    """Ziegler et al. 2019's proportional controller (https://arxiv.org/abs/1909.08593, section 2.2):
    ``kl_coef *= 1 + clip(kl / target - 1, -0.2, 0.2) * n_steps / horizon`` — the coefficient grows while the
    KL is above `target` and shrinks while it is below.

    Args:
        kl_coef: the initial coefficient.
        target: the KL (per sequence, nats) aimed at.
        horizon: how many samples the correction is spread over.
    """

    def __init__(self, kl_coef: float, target: float, horizon: int) -> None:
        super().__init__(kl_coef)
        if target <= 0 or horizon <= 0:
            raise ValueError(f"the adaptive KL controller needs target > 0 and horizon > 0, got {target}, {horizon}")
        self.target, self.horizon = float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Move the coefficient after a rollout of `n_steps` samples whose mean sequence KL was `current_kl`."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon


def kl_controller(kl_coef: float, adaptive: bool, target: float, horizon: int) -> FixedKLController:
    """The controller a config asks for."""
    return AdaptiveKLController(kl_coef, target, horizon) if adaptive else FixedKLController(kl_coef)


# ---------------------------------------------------------------------------------------------- losses
@dataclass
class PPOLosses:
    """The loss of a minibatch and its diagnostics (scalars; all but `loss` detached).

    `loss` = policy_loss + vf_coef * value_loss; `clip_frac`: share of tokens whose policy term was clipped;
    `value_clip_frac`: the same for the value term; `approx_kl`: 0.5 * mean((logp - old_logp)^2);
    `entropy`: mean entropy of the policy at the response tokens.
    """

    loss: torch.Tensor
    policy_loss: torch.Tensor
    value_loss: torch.Tensor
    entropy: torch.Tensor
    approx_kl: torch.Tensor
    clip_frac: torch.Tensor
    value_clip_frac: torch.Tensor


def ppo_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    *,
    clip_range: float,
    clip_range_value: float,
    vf_coef: float,
    entropy: torch.Tensor | None = None,
) -> PPOLosses:
    """The clipped PPO objective (Schulman et al. 2017, https://arxiv.org/abs/1707.06347, eq. 7) and the clipped
    value loss, as trl's ``PPOTrainer.loss``; masked means over the response tokens. All inputs (B, T)."""
    m = mask.to(torch.float32)
    clipped_values = torch.clamp(values, old_values - clip_range_value, old_values + clip_range_value)
    vf_losses1 = (values - returns) ** 2
    vf_losses2 = (clipped_values - returns) ** 2
    value_loss = 0.5 * masked_mean(torch.max(vf_losses1, vf_losses2), m)
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    policy_loss = masked_mean(torch.max(pg_losses1, pg_losses2), m)
    with torch.no_grad():
        stats = {
            "entropy": masked_mean(entropy, m) if entropy is not None else torch.zeros((), device=m.device),
            "approx_kl": 0.5 * masked_mean(log_ratio**2, m),
            "clip_frac": masked_mean((pg_losses2 > pg_losses1).float(), m),
            "value_clip_frac": masked_mean((vf_losses2 > vf_losses1).float(), m),
        }
    return PPOLosses(
        loss=policy_loss + vf_coef * value_loss, policy_loss=policy_loss.detach(), value_loss=value_loss.detach(),
        **stats,
    )  # fmt: skip


def score_in_chunks(fn: Callable[..., Any], tensors: dict[str, torch.Tensor], chunk: int) -> list[Any]:
    """Call ``fn(**rows)`` on consecutive row chunks of `tensors` (same first dimension); the results in order."""
    n = next(iter(tensors.values())).shape[0]
    return [fn(**{k: v[s : s + chunk] for k, v in tensors.items()}) for s in range(0, n, max(1, chunk))]
