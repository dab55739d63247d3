"""Per-token log-probabilities of response tokens: what DPO, PPO and GRPO all compare between a policy and its
reference.

A sequence is ``prompt + response`` in one row, right-padded to the batch width::

    input_ids      [p0 p1 p2 r0 r1 r2 PAD]        response_mask [0 0 0 1 1 1 0]
    attention_mask [1  1  1  1  1  1  0  ]

Token ``t`` is predicted from position ``t - 1``, so the log-probability of response token ``r0`` (column 3)
comes from the logits at column 2. Results are returned aligned with the *tokens* (column 3 holds log p(r0)),
0 where ``response_mask`` is 0, so sums over ``dim=-1`` are sequence log-likelihoods and masks line up with
``input_ids`` everywhere in `llmlab.align`.

Only the response positions go through the LM head (`llmlab.models.heads.logits_at`): with SmolLM2's 49k
vocabulary the full (B, T, V) logits are the largest tensor of a step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.generate.loop import accepts_position_ids, positions_from_mask
from llmlab.models.heads import logits_at


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DDP wrapper (the model itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@dataclass
class TokenLogprobs:
    """`logprobs` (B, T) float32 log p(token) at response tokens, 0 elsewhere; `entropy` (B, T) of the
    predictive distribution at the same places (None unless asked for)."""

    logprobs: torch.Tensor
    entropy: torch.Tensor | None = None


def forward_kwargs(model: nn.Module, attention_mask: torch.Tensor) -> dict[str, Any]:
    """Mask and position ids for a padded batch (none when nothing is padded: the plain causal path)."""
    if bool(attention_mask.all()):
        return {}
    kwargs: dict[str, Any] = {"attention_mask": attention_mask}
    if accepts_position_ids(unwrap(model)):
        kwargs["position_ids"] = positions_from_mask(attention_mask)  # left padding too
    return kwargs


def token_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    call: Callable[..., Any] | None = None,
) -> TokenLogprobs:
    """Log-probabilities of the response tokens under `model` (see the module docstring for the layout).

    Args:
        model: an llmlab causal LM (unwrapped; `call` runs the forward when it is wrapped, e.g. DDP).
        input_ids: (B, T) prompt + response ids.
        attention_mask: (B, T) 1 for real tokens.
        response_mask: (B, T) 1 for the tokens to score (never column 0).
        temperature: divide the logits by it first (PPO/GRPO score with the sampling temperature, as trl).
        with_entropy: also return the entropy of each scored position's distribution.

    Returns:
        `TokenLogprobs` with (B, T) float32 tensors aligned with `input_ids`.
    """
    response = response_mask.bool()
    if bool(response[:, 0].any()):
        raise ValueError("response_mask marks column 0, which has no preceding position to predict it from")
    select = torch.zeros_like(response)
    select[:, :-1] = response[:, 1:]  # (B, T) positions whose logits predict a response token
    logits = logits_at(unwrap(model), select, input_ids, call=call or model, **forward_kwargs(model, attention_mask))
    logits = logits.float() / temperature  # (N, V)
    logp_all = F.log_softmax(logits, dim=-1)  # (N, V)
    targets = input_ids[response]  # (N,) row-major, the same order as `select`'s positions
    picked = logp_all.gather(-1, targets[:, None]).squeeze(-1)  # (N,)
    out = torch.zeros(input_ids.shape, dtype=torch.float32, device=input_ids.device)
    out = out.masked_scatter(response, picked)
    entropy = None
    if with_entropy:
        ent = -(logp_all.exp() * logp_all).sum(-1)  # (N,)
        entropy = torch.zeros_like(out).masked_scatter(response, ent)
    return TokenLogprobs(out, entropy)


def sequence_logprobs(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor, **kw: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B,) summed log-probability of each row's response tokens and (B,) their count."""
    lp = token_logprobs(model, input_ids, attention_mask, response_mask, **kw).logprobs
    return lp.sum(-1), response_mask.sum(-1)
