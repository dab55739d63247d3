"""Pruning (issue 12 item 2): unstructured magnitude (layer-wise, global), N:M semi-structured, Wanda, and
structured removal of attention heads and MLP neurons.

- `masks.py`: persistent `torch.nn.utils.prune` masks on the decoder layers' Linears, magnitude and N:M
  masks, `make_permanent`, `sparsity_report`.
- `wanda.py`: calibration input norms (forward hooks) and Wanda scores |W_ij| * ||X_j||_2.
- `structured.py`: head / neuron importance and the smaller model (`prune_structured`).
- `api.py`: `check_prune_args` -> `PruneSpec`, `prune_model`, `stage_specs` (iterative pruning).
"""

from llmlab.compress.prune.api import METHODS, PruneSpec, check_prune_args, parse_nm, prune_model, stage_specs
from llmlab.compress.prune.masks import (
    LayerSparsity,
    apply_mask,
    magnitude_prune,
    make_permanent,
    nm_mask,
    overall_sparsity,
    sparsity_report,
    target_linears,
)
from llmlab.compress.prune.structured import (
    IMPORTANCE,
    StructuredReport,
    counts_for_sparsity,
    plan_structured,
    prune_structured,
)
from llmlab.compress.prune.wanda import collect_input_norms, wanda_prune, wanda_scores

__all__ = [
    "IMPORTANCE",
    "METHODS",
    "LayerSparsity",
    "PruneSpec",
    "StructuredReport",
    "apply_mask",
    "check_prune_args",
    "collect_input_norms",
    "counts_for_sparsity",
    "magnitude_prune",
    "make_permanent",
    "nm_mask",
    "overall_sparsity",
    "parse_nm",
    "plan_structured",
    "prune_model",
    "prune_structured",
    "sparsity_report",
    "stage_specs",
    "target_linears",
    "wanda_prune",
    "wanda_scores",
]
