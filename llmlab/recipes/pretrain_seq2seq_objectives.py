"""``llmlab pretrain objective=span_corruption|text_infilling``: T5 span corruption / BART text infilling on the
encoder-decoder families (`llmlab.models.t5`, `llmlab.models.bart`)."""

from __future__ import annotations

from typing import Any

from llmlab.recipes.pretrain_objectives_config import ObjectiveConfig


def pretrain_seq2seq_objective(cfg: ObjectiveConfig, resume: bool = False, say: Any = print) -> dict[str, Any]:
    """Run span corruption / text infilling (needs the t5 / bart model families)."""
    raise ValueError(
        f"objective={cfg.objective} with model.family={cfg.model.family} is not available in this build yet; "
        "use an encoder objective (mlm, mlm_nsp, mlm_sop, electra, simcse, supcon)"
    )
