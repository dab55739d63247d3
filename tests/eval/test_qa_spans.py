"""The extractive answer search and corpus EM/F1 (`llmlab.eval.metrics.qa`), hand-computed."""

from __future__ import annotations

import math

import pytest

from llmlab.eval.metrics.qa import search_answer, squad_scores

CONTEXT = "Ada was born in London in 1815."
#          0123456789012345678901234567890
# tokens: [CLS] q [SEP] Ada was born in London in 1815 . [SEP]
OFFSETS = [None, None, None, (0, 3), (4, 7), (8, 12), (13, 15), (16, 22), (23, 25), (26, 30), (30, 31), None]


def test_best_valid_pair_wins() -> None:
    start = [9.0, 0, 0, 0, 0, 0, 0, 5.0, 0, 4.0, 0, 0]  # [CLS] is best but outside the context
    end = [9.0, 0, 0, 0, 0, 0, 0, 1.0, 0, 3.0, 0, 0]
    span = search_answer(CONTEXT, [(start, end, OFFSETS)], n_best=3)
    # candidates inside: (7,7)=6, (7,9)=8, (9,9)=7, (9,7) invalid (end < start) -> "London in 1815"
    assert (span.text, span.start_char, span.end_char, span.score) == ("London in 1815", 16, 30, 8.0)


def test_max_answer_length_and_n_best() -> None:
    start = [0, 0, 0, 0, 0, 0, 0, 5.0, 0, 4.0, 0, 0]
    end = [0, 0, 0, 0, 0, 0, 0, 1.0, 0, 3.0, 0, 0]
    # with at most 2 tokens, (7, 9) (3 tokens) is out: (9, 9) = 7 beats (7, 7) = 6
    assert search_answer(CONTEXT, [(start, end, OFFSETS)], max_answer_length=2).text == "1815"
    # n_best=1: only start 7 and end 9 are considered -> (7, 9)
    assert search_answer(CONTEXT, [(start, end, OFFSETS)], n_best=1).text == "London in 1815"


def test_windows_compete_and_empty_when_nothing_valid() -> None:
    low = ([0.0] * 12, [0.0] * 12, OFFSETS)
    high = ([0, 0, 0, 2.0] + [0.0] * 8, [0, 0, 0, 0, 3.0] + [0.0] * 7, OFFSETS)
    assert search_answer(CONTEXT, [low, high]).text == "Ada was"
    none_inside = ([1.0] * 3, [1.0] * 3, [None, None, None])
    empty = search_answer(CONTEXT, [none_inside])
    assert empty.text == "" and math.isinf(empty.score)


def test_squad_scores_means() -> None:
    s = squad_scores(["the London", "1816", "伦敦"], [["London"], ["1815", "in 1815"], ["伦敦市"]], lang="en")
    assert s["exact_match"] == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="2 predictions but 1"):
        squad_scores(["a", "b"], ["a"])
