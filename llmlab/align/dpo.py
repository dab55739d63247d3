"""The DPO family of preference losses: learn from (prompt, chosen, rejected) pairs without a reward model.

Every loss here is a function of the *sequence* log-probabilities of the chosen and rejected responses (summed
over response tokens) under the policy and, for the reference-based losses, under the frozen reference
(`llmlab.align.reference.ReferencePolicy`, or precomputed once by `precompute_ref_logprobs`). With
``Δ = (log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l))`` (the difference of implicit rewards / β):

=========  ===========================================================================================  =========
loss       per pair                                                                                      reference
=========  ===========================================================================================  =========
sigmoid    ``-logσ(βΔ)`` — DPO, Rafailov et al. 2023, https://arxiv.org/abs/2305.18290                     yes
(cDPO)     ``-(1-ε)·logσ(βΔ) - ε·logσ(-βΔ)`` with ``label_smoothing = ε`` — conservative DPO, labels        yes
           flipped with probability ε (Mitchell 2023, https://ericmitchell.ai/cdpo.pdf)
ipo        ``(Δ̄ - 1/(2β))²`` with Δ̄ the per-token (length-averaged) Δ — IPO, Azar et al. 2023,            yes
           https://arxiv.org/abs/2310.12036 (β is the paper's τ)
hinge      ``max(0, 1 - βΔ)`` — SLiC-HF, Zhao et al. 2023, https://arxiv.org/abs/2305.10425                  yes
simpo      ``-logσ(β(ℓ̄_w - ℓ̄_l) - γ)`` with ℓ̄ the length-averaged log-probability (+ cDPO's ε) —            no
           SimPO, Meng et al. 2024, https://arxiv.org/abs/2405.14734
orpo       ``-β·logσ(log odds(ℓ̄_w) - log odds(ℓ̄_l))``, odds(p) = p / (1 - p) — ORPO, Hong et al. 2024,     no
           https://arxiv.org/abs/2403.07691; the trainer adds the chosen response's token-mean NLL (the
           paper's SFT term over the response; trl's ORPOTrainer also counts the prompt tokens)
=========  ===========================================================================================  =========

The formulas are trl 1.16's (``DPOTrainer._compute_loss`` for sigmoid/ipo/hinge, including IPO's
length normalisation; ``CPOTrainer.cpo_loss`` for the label-smoothed sigmoid and SimPO; ``ORPOTrainer
.odds_ratio_loss`` for ORPO), checked against them in tests/align/test_dpo_loss.py. The logged rewards are
trl's too: ``β · (log π - log π_ref)`` for the reference-based losses and ``β · ℓ̄`` for SimPO and ORPO.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

DPO_LOSSES = ("sigmoid", "ipo", "hinge", "simpo", "orpo")
REFERENCE_FREE_LOSSES = ("simpo", "orpo")


def needs_reference(loss: str) -> bool:
    """Whether `loss` compares the policy with a reference model (SimPO and ORPO do not)."""
    return loss not in REFERENCE_FREE_LOSSES


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for x <= 0, stable on both sides of -ln 2 (Mächler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def _smoothed_sigmoid(logits: torch.Tensor, label_smoothing: float) -> torch.Tensor:
    """``-(1-ε)·logσ(z) - ε·logσ(-z)``: the logistic loss with labels flipped with probability ε."""
    losses = -F.logsigmoid(logits) * (1 - label_smoothing)
    if label_smoothing:
        losses = losses - F.logsigmoid(-logits) * label_smoothing
    return losses


def preference_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None,
    ref_rejected_logps: torch.Tensor | None,
    *,
    loss: str,
    beta: float,
    label_smoothing: float = 0.0,
    simpo_gamma: float = 0.5,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-pair loss and implicit rewards of one of `DPO_LOSSES` (see the module docstring for the formulas).

    Args:
        policy_chosen_logps / policy_rejected_logps: (B,) summed log-probabilities of the responses (policy).
        ref_chosen_logps / ref_rejected_logps: (B,) the same under the reference (None for simpo / orpo).
        loss: sigmoid | ipo | hinge | simpo | orpo.
        beta: DPO's β (IPO's τ, SimPO's β, ORPO's λ).
        label_smoothing: cDPO's ε (sigmoid and simpo).
        simpo_gamma: SimPO's target margin γ (the logits are shifted by γ / β before scaling by β, as trl).
        chosen_lengths / rejected_lengths: (B,) response token counts (ipo, simpo, orpo average over them).

    Returns:
        (losses (B,), chosen_rewards (B,), rejected_rewards (B,)), float32; the rewards are detached.
    """
    if loss not in DPO_LOSSES:
        raise ValueError(f"unknown DPO loss {loss!r}; choose one of: {', '.join(DPO_LOSSES)}")
    chosen, rejected = policy_chosen_logps.float(), policy_rejected_logps.float()
    if loss in ("ipo", "simpo", "orpo") and (chosen_lengths is None or rejected_lengths is None):
        raise ValueError(f"the {loss} loss averages over response tokens: pass chosen_lengths and rejected_lengths")
    if loss in REFERENCE_FREE_LOSSES:
        chosen_avg = chosen / chosen_lengths.float().clamp(min=1)  # (B,) mean log-prob per token
        rejected_avg = rejected / rejected_lengths.float().clamp(min=1)
        if loss == "simpo":
            logits = chosen_avg - rejected_avg - simpo_gamma / beta
            losses = _smoothed_sigmoid(beta * logits, label_smoothing)
        else:  # orpo: log odds(p) = log p - log(1 - p), on the per-token mean log-probabilities
            log_odds = (chosen_avg - rejected_avg) - (log1mexp(chosen_avg) - log1mexp(rejected_avg))
            losses = -beta * F.logsigmoid(log_odds)
        return losses, beta * chosen_avg.detach(), beta * rejected_avg.detach()

    if ref_chosen_logps is None or ref_rejected_logps is None:
        raise ValueError(f"the {loss} loss compares with a reference: pass ref_chosen_logps and ref_rejected_logps")
    chosen_logratios = chosen - ref_chosen_logps.float()  # (B,)
    rejected_logratios = rejected - ref_rejected_logps.float()
    delta = chosen_logratios - rejected_logratios  # (B,)
    if loss == "sigmoid":
        losses = _smoothed_sigmoid(beta * delta, label_smoothing)
    elif loss == "hinge":
        losses = torch.relu(1 - beta * delta)
    else:  # ipo, on per-token log-ratios (trl's normalisation, confirmed with the IPO authors)
        chosen_mean = chosen_logratios / chosen_lengths.float().clamp(min=1)  # (B,) per token
        rejected_mean = rejected_logratios / rejected_lengths.float().clamp(min=1)
        losses = (chosen_mean - rejected_mean - 1 / (2 * beta)) ** 2
    return losses, beta * chosen_logratios.detach(), beta * rejected_logratios.detach()


def loss_from_config(dpo: Any) -> dict[str, Any]:
    """The keyword arguments of `preference_loss` taken from a ``dpo:`` config section (`DPOConfig`)."""
    return {"loss": dpo.loss, "beta": dpo.beta, "label_smoothing": dpo.label_smoothing, "simpo_gamma": dpo.simpo_gamma}


def split_pairs(per_row: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(2B, ...) rows of a pair batch (the B chosen rows first, then the B rejected) -> chosen, rejected."""
    n = per_row.shape[0] // 2
    return per_row[:n], per_row[n:]


@torch.no_grad()
def precompute_ref_logprobs(
    reference: Any,
    pairs: Sequence[Any],
    pad_id: int,
    *,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
    autocast: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
) -> torch.Tensor:
    """The reference's summed log-probabilities of every pair, computed once before training.

    Args:
        reference: a `llmlab.align.reference.ReferencePolicy`, or a model that is the reference as it is (the
            policy before training: then no frozen copy is ever made); on `device`.
        pairs: `llmlab.data.preference.PreferencePair`s.
        pad_id: the padding id.
        batch_size: pairs per forward.
        autocast: the training precision's autocast (so that the values match a per-step reference).

    Returns:
        (N, 2) float32 on the CPU: column 0 the chosen response, column 1 the rejected one, row i = pairs[i].
    """
    from llmlab.align.packing import can_pack, pair_rows, response_logprob_sums
    from llmlab.align.reference import ReferencePolicy
    from llmlab.train.trainer import to_device

    out = torch.zeros(len(pairs), 2, dtype=torch.float32)
    context = reference.model() if isinstance(reference, ReferencePolicy) else _eval_mode(reference)
    with context as model:
        pack = can_pack(model)
        for start in range(0, len(pairs), batch_size):
            rows = to_device(pair_rows(pairs[start : start + batch_size], pad_id, pack=pack), device)
            with autocast():
                sums = response_logprob_sums(model, rows).cpu()  # (2b,)
            chosen, rejected = split_pairs(sums)
            out[start : start + len(chosen), 0], out[start : start + len(chosen), 1] = chosen, rejected
    return out


@contextlib.contextmanager
def _eval_mode(model: Any) -> Any:
    """``with _eval_mode(model) as m:`` the model in eval mode (its training flag restored after)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
