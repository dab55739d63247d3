"""Exact match / token F1 (SQuAD script behaviour), accuracy / macro-F1 (sklearn docs), ECE and standard errors."""

from __future__ import annotations

import math
import statistics

import pytest

from llmlab.eval.metrics import (
    accuracy,
    bootstrap_stderr,
    char_level_tokens,
    exact_match,
    expected_calibration_error,
    macro_f1,
    mean_stderr,
    normalize_answer,
    token_f1,
)


def test_squad_normalisation_lowercases_and_strips_punctuation_articles_and_spaces():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("theory") == "theory"  # articles only as whole words


def test_exact_match_and_f1_follow_the_squad_script():
    assert exact_match("The Cat!", "cat") == 1.0
    assert exact_match("cats", "cat") == 0.0
    assert token_f1("the cat sat", "cat sat on mat") == pytest.approx(2 * 1.0 * 0.5 / 1.5)  # P 2/2, R 2/4
    assert token_f1("dog", "cat") == 0.0
    assert token_f1("a cat cat", "cat") == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # bag overlap is 1, not 2
    assert token_f1("the", "") == 1.0 and token_f1("x", "the") == 0.0  # v2.0: both empty -> 1, one empty -> 0


def test_several_references_take_the_maximum():
    assert exact_match("Paris", ["London", "paris."]) == 1.0
    assert token_f1("new york city", ["york", "new york city"]) == 1.0


def test_chinese_is_compared_by_characters_without_punctuation():
    assert char_level_tokens("我爱 Python 3，对吧？") == ["我", "爱", "python", "3", "对", "吧"]
    assert exact_match("北京。", "北京", lang="zh") == 1.0
    assert exact_match("北京", "北京市", lang="zh") == 0.0
    # 天气很好 vs 今天天气好: common 天, 气, 好 = 3; P 3/4, R 3/5.
    assert token_f1("天气很好", "今天天气好", lang="zh") == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert token_f1("天气很好", "今天天气好", lang="en") == 0.0  # one "word" each without the zh rule


def test_accuracy_and_macro_f1_match_the_sklearn_docs():
    # sklearn.metrics.f1_score docstring: y_true = [0, 1, 2, 0, 1, 2], y_pred = [0, 2, 1, 0, 0, 1] -> macro 0.26...
    assert macro_f1([0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2]) == pytest.approx(0.2666666, abs=1e-6)
    # sklearn.metrics.accuracy_score docstring: y_pred = [0, 2, 1, 3], y_true = [0, 1, 2, 3] -> 0.5.
    assert accuracy([0, 2, 1, 3], [0, 1, 2, 3]) == 0.5
    assert macro_f1(["pos", "pos"], ["pos", "pos"]) == 1.0


def test_ece_of_a_perfectly_calibrated_toy_is_zero():
    # 75% confident and right 3 times out of 4; 25% confident and right 1 time out of 4.
    confidences = [0.75] * 4 + [0.25] * 4
    correct = [True, True, True, False, True, False, False, False]
    assert expected_calibration_error(confidences, correct) == pytest.approx(0.0)


def test_ece_by_hand_with_bin_edges():
    # bin (0.8, 0.9]: acc 1/2, conf 0.9 -> 2/4 * 0.4; bin (0.1, 0.2]: acc 0, conf 0.2 -> 2/4 * 0.2.
    assert expected_calibration_error([0.9, 0.9, 0.2, 0.2], [True, False, False, False]) == pytest.approx(0.3)
    # 0.7 is the upper edge of (0.6, 0.7]: sits with 0.65, so the bin's mean confidence is 0.675 and acc 1.
    assert expected_calibration_error([0.7, 0.65], [True, True]) == pytest.approx(0.325)
    # one bin: ECE = |accuracy - mean confidence|.
    assert expected_calibration_error([0.9, 0.3], [True, True], n_bins=1) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="outside"):
        expected_calibration_error([1.5], [True])


def test_mean_stderr_uses_the_sample_standard_deviation():
    values = [1.0, 0.0, 1.0, 1.0]
    mean, stderr = mean_stderr(values)
    assert mean == 0.75
    assert stderr == pytest.approx(statistics.stdev(values) / 2)  # ddof = 1: sqrt(0.25) / 2
    assert math.isnan(mean_stderr([1.0])[1])
    with pytest.raises(ValueError):
        mean_stderr([])


def test_bootstrap_stderr_agrees_with_the_analytic_stderr_of_a_mean_and_is_seeded():
    values = [float(i % 3 == 0) for i in range(300)]

    def mean_of(indices: list[int]) -> float:
        return sum(values[i] for i in indices) / len(indices)

    analytic = mean_stderr(values)[1]
    boot = bootstrap_stderr(mean_of, len(values), iters=500, seed=1)
    assert boot == pytest.approx(analytic, rel=0.15)
    assert bootstrap_stderr(mean_of, len(values), iters=50, seed=3) == bootstrap_stderr(mean_of, 300, iters=50, seed=3)
    assert bootstrap_stderr(lambda idx: 1.0, 5, iters=10) == 0.0
