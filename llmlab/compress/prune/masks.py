"""Unstructured pruning with persistent masks: magnitude (layer-wise and global) and N:M semi-structured.

Every pruned `nn.Linear` carries a `torch.nn.utils.prune` reparametrisation: the trainable parameter is
`weight_orig`, the buffer `weight_mask` is 0 where a weight is pruned, and a forward pre-hook sets
`weight = weight_orig * weight_mask` before each call. So an optimizer step (the fine-tuning loop) may move
`weight_orig`, but the weights the model computes with stay exactly zero where the mask is 0. `make_permanent`
folds the masks in (`prune.remove`) before a model is saved.

- Magnitude pruning (Han et al. 2015, "Learning both Weights and Connections for Efficient Neural Networks",
  https://arxiv.org/abs/1506.02626): remove the weights of smallest |w|; *layer-wise* every targeted Linear
  to the same sparsity, *global* one threshold over all targeted Linears (layers differ in sparsity).
- N:M semi-structured sparsity (2:4 by default; NVIDIA Ampere sparse tensor cores, Mishra et al. 2021,
  "Accelerating Sparse Deep Neural Networks", https://arxiv.org/abs/2104.08378): along the input dimension,
  of every M consecutive weights of a row keep the N of highest score (|w|, or Wanda's score).

Targets are the Linears inside the decoder layers (`model.layers`): attention and MLP projections. The token
embedding and the (often tied) LM head are left dense, as in the Wanda and SparseGPT papers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune


def target_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """Qualified name -> every `nn.Linear` inside the model's decoder layers (`model.layers`), in order."""
    layers = getattr(model, "layers", None)
    if layers is None:
        raise ValueError(f"{type(model).__name__} has no decoder layers (model.layers); prune an llmlab GPT or Llama")
    prefix = next(name for name, module in model.named_modules() if module is layers)
    return {f"{prefix}.{name}": m for name, m in layers.named_modules() if isinstance(m, nn.Linear)}


def effective_weight(linear: nn.Linear) -> torch.Tensor:
    """The weight the Linear computes with: `weight_orig * weight_mask` when it is pruned, else `weight`."""
    if torch_prune.is_pruned(linear) and hasattr(linear, "weight_mask"):
        return (linear.weight_orig * linear.weight_mask).detach()
    return linear.weight.detach()


def apply_mask(linear: nn.Linear, keep: torch.Tensor) -> None:
    """Prune `linear` with the boolean mask `keep` (N, K) (True = kept) through `prune.custom_from_mask`.

    A Linear that is already pruned keeps its earlier zeros (the new mask is AND-ed with the old one): the old
    reparametrisation is folded in first, so re-pruning at a higher sparsity (iterative pruning) never revives
    a weight.
    """
    keep = keep.to(device=linear.weight.device, dtype=torch.bool)
    if hasattr(linear, "weight_mask"):
        keep = keep & linear.weight_mask.bool()
        torch_prune.remove(linear, "weight")
    torch_prune.custom_from_mask(linear, "weight", keep.to(linear.weight.dtype))


def make_permanent(model: nn.Module) -> int:
    """Fold every pruning mask into its weight (`prune.remove`): plain `weight` parameters, zeros in place.

    Call before saving; returns the number of modules changed.
    """
    changed = 0
    for module in model.modules():
        for name in [n[: -len("_mask")] for n, _ in list(module.named_buffers(recurse=False)) if n.endswith("_mask")]:
            if hasattr(module, f"{name}_orig"):
                torch_prune.remove(module, name)
                changed += 1
    return changed


def keep_smallest_removed(scores: torch.Tensor, n_remove: int) -> torch.Tensor:
    """Boolean keep-mask of `scores`' shape with exactly the `n_remove` lowest-scoring entries False."""
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if n_remove > 0:
        keep[torch.argsort(scores.flatten().float(), stable=True)[:n_remove]] = (
            False  # argsort: topk is slow for large k
        )
    return keep.view(scores.shape)


def row_masks(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask (N, K) removing the `round(sparsity * K)` lowest scores of every row (Wanda's comparison group)."""
    n_remove = round(sparsity * scores.shape[1])
    keep = torch.ones_like(scores, dtype=torch.bool)
    if n_remove > 0:
        keep.scatter_(1, torch.argsort(scores.float(), dim=1, stable=True)[:, :n_remove], False)
    return keep


def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4) -> torch.Tensor:
    """Keep-mask (N, K): in every group of `m` consecutive inputs of a row, keep the `n` highest scores.

    Ties keep the earlier input. K must be a multiple of `m` (ValueError otherwise).
    """
    rows, cols = scores.shape
    if cols % m:
        raise ValueError(f"{n}:{m} sparsity needs in_features divisible by {m}, got {cols}; use unstructured pruning")
    groups = scores.float().reshape(rows, cols // m, m)  # (N, K/m, m)
    top = torch.topk(groups, n, dim=-1, sorted=False).indices  # (N, K/m, n)
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, top, True)
    return keep.reshape(rows, cols)


def magnitude_prune(model: nn.Module, sparsity: float, scope: str = "layer") -> dict[str, nn.Linear]:
    """Magnitude-prune the targeted Linears to `sparsity`: `scope` "layer" (each Linear) or "global" (one threshold).

    Weights already pruned have |w| = 0 and are removed first, so a higher sparsity extends the earlier mask.
    Returns the pruned Linears by name.
    """
    linears = target_linears(model)
    if scope == "layer":
        for linear in linears.values():
            w = effective_weight(linear).abs()
            apply_mask(linear, keep_smallest_removed(w, round(sparsity * w.numel())))
        return linears
    if scope != "global":
        raise ValueError(f"unknown pruning scope {scope!r}; choose layer or global")
    weights = [effective_weight(linear).abs().flatten() for linear in linears.values()]
    total = sum(w.numel() for w in weights)
    n_remove = round(sparsity * total)
    if n_remove > 0:  # the threshold: the n_remove-th smallest |w| over every targeted Linear
        threshold = torch.kthvalue(torch.cat(weights).float(), n_remove).values
        for linear in linears.values():
            apply_mask(linear, effective_weight(linear).abs().float() > threshold)
    return linears


@dataclass
class LayerSparsity:
    """How many weights of one Linear are zero (pruned, or zero in a permanent model)."""

    name: str
    shape: tuple[int, int]
    zeros: int
    total: int

    @property
    def sparsity(self) -> float:
        return self.zeros / self.total if self.total else 0.0


def sparsity_report(model: nn.Module) -> list[LayerSparsity]:
    """One row per targeted Linear: its shape and number of zero weights (masked or stored as zero)."""
    rows = []
    for name, linear in target_linears(model).items():
        w = effective_weight(linear)
        rows.append(LayerSparsity(name, (w.shape[0], w.shape[1]), int((w == 0).sum()), w.numel()))
    return rows


def overall_sparsity(rows: Iterable[LayerSparsity]) -> float:
    """Zero weights / all weights over the rows of a `sparsity_report`."""
    rows = list(rows)
    total = sum(r.total for r in rows)
    return sum(r.zeros for r in rows) / total if total else 0.0
