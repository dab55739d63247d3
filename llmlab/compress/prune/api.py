"""One entry point for every pruning method: `prune_model(model, method, ...)`, and its argument checks.

Methods (the CLI's `--method`): `magnitude` (layer-wise), `global-magnitude`, `N:M` such as `2:4`
(semi-structured; `score` magnitude or wanda), `wanda` (unstructured, per output row) and `structured`
(removes heads and neurons; returns a new, smaller model). See `masks`, `wanda` and `structured` for the papers.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import torch
from torch import nn

from llmlab.compress.prune.masks import apply_mask, effective_weight, magnitude_prune, nm_mask, target_linears
from llmlab.compress.prune.structured import (
    IMPORTANCE,
    StructuredReport,
    counts_for_sparsity,
    prune_structured,
    valid_head_counts,
)
from llmlab.compress.prune.wanda import wanda_prune, wanda_scores

METHODS = ("magnitude", "global-magnitude", "2:4", "wanda", "structured")
NM_SCORES = ("magnitude", "wanda")
_NM = re.compile(r"^(\d+):(\d+)$")


@dataclass
class PruneSpec:
    """A checked pruning request (see `check_prune_args`)."""

    method: str
    sparsity: float = 0.5
    heads: int | None = None
    neurons: int | None = None
    importance: str = "weight"  # structured: weight | activation
    score: str = "magnitude"  # N:M: magnitude | wanda
    nm: tuple[int, int] | None = field(default=None)

    @property
    def needs_calibration(self) -> bool:
        """Wanda scores, N:M with Wanda scores and activation-based structured importance read activations."""
        return (
            self.method == "wanda"
            or (self.nm is not None and self.score == "wanda")
            or (self.method == "structured" and self.importance == "activation")
        )


def parse_nm(method: str) -> tuple[int, int] | None:
    """(N, M) for an "N:M" method name (0 < N < M), None for other names."""
    match = _NM.match(method)
    if not match:
        return None
    n, m = int(match.group(1)), int(match.group(2))
    if not 0 < n < m:
        raise ValueError(f"--method {method}: N:M sparsity needs 0 < N < M (e.g. 2:4)")
    return n, m


def check_prune_args(
    method: str,
    sparsity: float | None,
    heads: int | None = None,
    neurons: int | None = None,
    importance: str = "weight",
    score: str = "magnitude",
) -> PruneSpec:
    """Check a pruning request before anything is loaded; ValueError (one line naming the input and the fix)."""
    nm = parse_nm(method)
    if nm is None and method not in METHODS:
        raise ValueError(f"unknown --method {method!r}; choose one of: {', '.join(METHODS)} (or any N:M)")
    if importance not in IMPORTANCE:
        raise ValueError(f"unknown --importance {importance!r}; choose one of: {', '.join(IMPORTANCE)}")
    if score not in NM_SCORES:
        raise ValueError(f"unknown --score {score!r}; choose one of: {', '.join(NM_SCORES)}")
    for flag, value in (("--heads", heads), ("--neurons", neurons)):
        if value is not None and (method != "structured" or value < 0):
            raise ValueError(f"{flag} {value}: only for --method structured, and >= 0")
    if nm is not None:
        implied = 1.0 - nm[0] / nm[1]  # N:M keeps N of every M weights
        if sparsity is not None and abs(sparsity - implied) > 1e-9:
            raise ValueError(f"--method {method} fixes the sparsity at {implied:g}; drop --sparsity {sparsity}")
        return PruneSpec(method, implied, score=score, nm=nm)
    if method == "structured" and (heads is not None or neurons is not None):
        if sparsity is not None:
            raise ValueError("give either --sparsity or --heads/--neurons for --method structured, not both")
        return PruneSpec(method, 0.0, heads or 0, neurons or 0, importance=importance)
    if sparsity is None:
        raise ValueError(f"--method {method} needs --sparsity S (a fraction in [0, 1), e.g. 0.5)")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"--sparsity {sparsity} must be a fraction in [0, 1), e.g. 0.5 for 50%")
    return PruneSpec(method, float(sparsity), importance=importance)


def prune_model(
    model: nn.Module,
    spec: PruneSpec,
    input_norms: dict[str, torch.Tensor] | None = None,
) -> tuple[nn.Module, StructuredReport | None]:
    """Apply `spec` to `model`; a model pruned before keeps its zeros (iterative pruning: `stage_specs`).

    Unstructured and N:M methods mask the model in place (persistent `torch.nn.utils.prune` masks) and return
    it; `structured` returns a new, smaller model and its report. `input_norms` (from
    `wanda.collect_input_norms`) are needed where `spec.needs_calibration`.
    """
    if spec.needs_calibration and input_norms is None:
        raise ValueError(f"--method {spec.method} needs calibration activations; pass --calibration")
    if spec.nm is not None:
        for name, linear in target_linears(model).items():
            w = effective_weight(linear)
            scores = wanda_scores(w, input_norms[name]) if spec.score == "wanda" else w.abs()  # type: ignore[index]
            apply_mask(linear, nm_mask(scores, *spec.nm))
        return model, None
    if spec.method in ("magnitude", "global-magnitude"):
        scope = "layer" if spec.method == "magnitude" else "global"
        magnitude_prune(model, spec.sparsity, scope)
        return model, None
    if spec.method == "wanda":
        wanda_prune(model, spec.sparsity, input_norms)  # type: ignore[arg-type]
        return model, None
    heads, neurons = spec.heads, spec.neurons
    if heads is None and neurons is None:
        heads, neurons = counts_for_sparsity(model, spec.sparsity)
    return prune_structured(model, heads or 0, neurons or 0, spec.importance, input_norms)


def stage_specs(model: nn.Module, spec: PruneSpec, steps: int) -> list[PruneSpec]:
    """Split `spec` into `steps` stages of iterative pruning (Han et al. 2015: prune, retrain, prune more).

    Unstructured methods reach sparsity `spec.sparsity * k / steps` at stage k (each stage extends the earlier
    mask); structured pruning removes the k-th share of the heads and neurons at each stage (counts relative to
    the original model). N:M patterns are reached in one stage.
    """
    if steps < 1:
        raise ValueError(f"--steps {steps} must be >= 1")
    if spec.nm is not None:
        if steps > 1:
            raise ValueError(f"--method {spec.method} is one fixed pattern; use --steps 1 (recovery still applies)")
        return [spec]
    if spec.method != "structured":
        return [dataclasses.replace(spec, sparsity=spec.sparsity * k / steps) for k in range(1, steps + 1)]
    heads, neurons = spec.heads, spec.neurons
    if heads is None and neurons is None:
        heads, neurons = counts_for_sparsity(model, spec.sparsity)
    heads, neurons = heads or 0, neurons or 0
    unit = min((h for h in valid_head_counts(model) if h > 0), default=1)  # heads go in valid multiples
    share = [(unit * (heads // unit * k // steps), neurons * k // steps) for k in range(steps + 1)]
    share[-1] = (heads, neurons)
    return [
        dataclasses.replace(spec, heads=share[k][0] - share[k - 1][0], neurons=share[k][1] - share[k - 1][1])
        for k in range(1, steps + 1)
    ]
