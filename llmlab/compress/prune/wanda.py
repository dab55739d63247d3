"""Wanda: pruning by weights and activations (Sun et al. 2023, https://arxiv.org/abs/2306.11695).

The score of weight W_ij (output i, input j) is `|W_ij| * ||X_j||_2`, where X_j is input feature j of the
Linear over every calibration token (the column norm of the (tokens, K) input matrix). Weights are compared
within each output row: every row loses the same fraction (or, for N:M, the lowest of each group of M).

The input norms are gathered in one pass of the calibration windows through the dense model (forward hooks
on the Linear inputs; the paper's code feeds each layer the pruned model's activations layer by layer, a
refinement not done here). `collect_input_norms` returns them so that several sparsities reuse one pass.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llmlab.compress.prune.masks import apply_mask, effective_weight, nm_mask, row_masks, target_linears


@torch.no_grad()
def collect_input_norms(model: nn.Module, calibration: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Name -> (K,) L2 norm of each input feature of every targeted Linear over the calibration tokens.

    Args:
        model: the (dense or masked) model.
        calibration: token windows, each a (1, T) or (B, T) LongTensor.
    """
    if not calibration:
        raise ValueError("Wanda needs calibration windows; pass --calibration (a corpus name or a text file)")
    linears = target_linears(model)
    squares = {name: torch.zeros(m.in_features, dtype=torch.float64) for name, m in linears.items()}

    def hook_for(name: str):  # noqa: ANN202
        def hook(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, args[0].shape[-1]).double()  # (tokens, K)
            squares[name] += (x * x).sum(0).cpu()

        return hook

    handles = [m.register_forward_pre_hook(hook_for(name)) for name, m in linears.items()]
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for window in calibration:
            model(window.to(device))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    return {name: s.sqrt().float() for name, s in squares.items()}


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """(N, K) weight, (K,) input-feature norms -> (N, K) scores |W_ij| * ||X_j||_2."""
    return weight.abs().float() * input_norms.to(weight.device).float()[None, :]


def wanda_prune(
    model: nn.Module,
    sparsity: float,
    input_norms: dict[str, torch.Tensor],
    nm: tuple[int, int] | None = None,
) -> dict[str, nn.Linear]:
    """Prune every targeted Linear by Wanda scores: `sparsity` per output row, or `nm` = (N, M) semi-structured.

    Returns the pruned Linears by name.
    """
    linears = target_linears(model)
    missing = sorted(set(linears) - set(input_norms))
    if missing:
        raise ValueError(f"no calibration input norms for {missing[0]}; collect them on this model first")
    for name, linear in linears.items():
        scores = wanda_scores(effective_weight(linear), input_norms[name])
        apply_mask(linear, nm_mask(scores, *nm) if nm else row_masks(scores, sparsity))
    return linears
