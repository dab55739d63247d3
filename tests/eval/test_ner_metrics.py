"""Entity-level scores (`llmlab.eval.metrics.ner`), hand-computed."""

from __future__ import annotations

import pytest

from llmlab.eval.metrics.ner import bio_spans, entity_f1, entity_scores


def test_entity_scores_by_hand() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O", "B-PER"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O", "B-PER"]]
    # gold entities: PER(0-2), LOC(3), ORG(0), PER(2) = 4; predicted: PER, ORG(3), ORG, PER = 4; 3 correct
    s = entity_scores(pred, gold)
    assert s["precision"] == pytest.approx(3 / 4) and s["recall"] == pytest.approx(3 / 4)
    assert s["f1"] == pytest.approx(3 / 4)
    assert s["token_accuracy"] == pytest.approx(6 / 7)
    assert s["per_type"]["PER"]["f1"] == 1.0 and s["per_type"]["LOC"]["recall"] == 0.0


def test_a_boundary_error_gets_no_credit() -> None:
    gold = [["B-PER", "I-PER", "I-PER", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"]]  # 2 of the 3 tokens right, but the entity is wrong
    assert entity_f1(pred, gold) == 0.0
    assert entity_scores(pred, gold)["token_accuracy"] == 0.75


def test_bio_spans_and_length_checks() -> None:
    assert bio_spans(["O", "B-LOC", "I-LOC", "B-PER", "O"]) == [("LOC", 1, 3), ("PER", 3, 4)]
    with pytest.raises(ValueError, match="sequence 0: 2 predicted tags but 3 gold"):
        entity_scores([["O", "O"]], [["O", "O", "O"]])
    with pytest.raises(ValueError, match="no tag sequences"):
        entity_scores([], [])
