"""Entity-level precision, recall and F1 for BIO-tagged sequences, through `seqeval` (the CoNLL-2000/2003
scorer's definitions; https://github.com/chakki-works/seqeval).

An entity is a maximal span that starts with `B-X` (or, in the lenient CoNLL mode seqeval uses by default, an
`I-X` after something that is not `X`) and continues with `I-X`; a predicted entity counts only when its type
AND both boundaries equal a gold entity's (no partial credit):

    precision = |predicted entities that are gold| / |predicted entities|
    recall    = |gold entities that were predicted| / |gold entities|
    F1        = 2 P R / (P + R)          (micro-averaged over all entities of all types)

Token accuracy is reported beside it (the fraction of tags equal to their gold tag), because it is what a
tagger is trained on, but it overstates quality: `O` dominates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _check(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> None:
    if not references:
        raise ValueError("no tag sequences to score; pass at least one")
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predicted sequences but {len(references)} gold ones; pass one per example"
        )
    for i, (p, r) in enumerate(zip(predictions, references, strict=True)):
        if len(p) != len(r):
            raise ValueError(f"sequence {i}: {len(p)} predicted tags but {len(r)} gold tags; tag every token once")


def entity_scores(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> dict[str, Any]:
    """Micro entity precision/recall/F1 (0-1), token accuracy and per-type F1 of BIO tag sequences.

    Returns:
        {"precision", "recall", "f1", "token_accuracy", "per_type": {type: {"precision", "recall", "f1",
        "support"}}}.

    Raises:
        ValueError: no sequences, or a prediction of another length than its reference.
    """
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    _check(predictions, references)
    preds, golds = [list(p) for p in predictions], [list(r) for r in references]
    tags = sum(len(r) for r in golds)
    same = sum(a == b for p, r in zip(preds, golds, strict=True) for a, b in zip(p, r, strict=True))
    report = classification_report(golds, preds, output_dict=True, zero_division=0)
    per_type = {
        name: {"precision": float(v["precision"]), "recall": float(v["recall"]), "f1": float(v["f1-score"]),
               "support": int(v["support"])}
        for name, v in report.items()
        if not name.endswith(" avg")
    }  # fmt: skip
    return {
        "precision": float(precision_score(golds, preds, zero_division=0)),
        "recall": float(recall_score(golds, preds, zero_division=0)),
        "f1": float(f1_score(golds, preds, zero_division=0)),
        "token_accuracy": same / tags if tags else float("nan"),
        "per_type": per_type,
    }


def entity_f1(predictions: Sequence[Sequence[str]], references: Sequence[Sequence[str]]) -> float:
    """seqeval's micro entity-level F1 (0-1) of BIO tag sequences (see the module docstring)."""
    return entity_scores(predictions, references)["f1"]


def bio_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """The entities of one BIO sequence as (type, first token, last token + 1), seqeval's chunking.

    >>> bio_spans(["B-PER", "I-PER", "O", "B-LOC"])
    [('PER', 0, 2), ('LOC', 3, 4)]
    """
    from seqeval.metrics.sequence_labeling import get_entities

    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]
