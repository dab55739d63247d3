"""The output record every llmlab language model returns (GPT, Llama, ...)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class ModelOutput:
    """What a causal LM's `forward` returns.

    Attributes:
        logits: (B, T, V) next-token logits.
        loss: mean cross-entropy over targets != -100 (+ moe_aux_loss_coef * aux_loss with MoE), or None.
        aux_loss: MoE load-balancing loss averaged over MoE layers (a zero tensor for dense models).
        attentions: per-layer self-attention weights (B, nh, T, S) when requested, else None.
        hidden_states: the final hidden states (B, T, C) that feed the LM head (after the final norm), when
            requested with `output_hidden_states=True`, else None.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    aux_loss: torch.Tensor | None = None
    attentions: list[torch.Tensor] | None = None
    hidden_states: torch.Tensor | None = None


def check_logits_to_keep(logits_to_keep: int, targets: torch.Tensor | None) -> None:
    """Raise ValueError for a negative `logits_to_keep`, or a non-zero one together with `targets`."""
    if logits_to_keep < 0:
        raise ValueError(f"logits_to_keep must be >= 0 (0 = all positions), got {logits_to_keep}")
    if logits_to_keep > 0 and targets is not None:
        raise ValueError("the loss needs logits at every position: pass logits_to_keep=0 together with targets")
