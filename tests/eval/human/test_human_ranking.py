"""Bradley-Terry, bootstrap intervals and kappa against maximum-likelihood fits and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from llmlab.eval.human.ranking import (
    bootstrap_elo,
    bradley_terry,
    cohen_kappa,
    elo_scale,
    fleiss_kappa,
    wins_matrix,
)


def _scipy_bradley_terry(wins: np.ndarray) -> np.ndarray:
    """The maximum-likelihood fit by direct optimisation of the log-likelihood over log-strengths."""
    n = len(wins)

    def negative_log_likelihood(theta: np.ndarray) -> float:
        diff = theta[:, None] - theta[None, :]  # (M, M) log-odds of i over j
        return float(np.sum(wins * np.logaddexp(0.0, -diff)))

    theta = minimize(negative_log_likelihood, np.zeros(n), method="BFGS", options={"gtol": 1e-10}).x
    strength = np.exp(theta - theta.max())
    return strength / strength.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mm_equals_the_maximum_likelihood_fit_by_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    true = rng.lognormal(size=5)
    outcomes = []
    for _ in range(400):
        i, j = rng.choice(5, size=2, replace=False)
        draw = rng.random()
        score = 0.5 if draw < 0.1 else float(draw < 0.1 + 0.9 * true[i] / (true[i] + true[j]))
        outcomes.append((int(i), int(j), score))
    wins = wins_matrix(outcomes, 5)
    np.testing.assert_allclose(bradley_terry(wins), _scipy_bradley_terry(wins), rtol=1e-5)


def test_two_models_known_solution_and_win_rate_order() -> None:
    # i beats j in 7 of 10 (a tie counts half each): the ML odds p_i / p_j are 7 / 3.
    outcomes = [(0, 1, 1.0)] * 6 + [(0, 1, 0.5)] * 2 + [(1, 0, 1.0)] * 2
    strength = bradley_terry(wins_matrix(outcomes, 2))
    assert strength[0] / strength[1] == pytest.approx(7 / 3, rel=1e-8) and strength.sum() == pytest.approx(1.0)
    # a round robin: the ranking follows the win rate
    wins = np.array([[0, 8, 9], [2, 0, 6], [1, 4, 0]], dtype=float)
    strength = bradley_terry(wins)
    win_rate = wins.sum(1) / (wins + wins.T).sum(1)
    assert list(np.argsort(-strength)) == list(np.argsort(-win_rate)) == [0, 1, 2]


def test_no_maximum_likelihood_without_a_prior() -> None:
    wins = wins_matrix([(0, 1, 1.0)] * 3, 2)  # model 1 never wins
    with pytest.raises(ValueError, match="prior"):
        bradley_terry(wins)
    strength = bradley_terry(wins, prior=1.0)  # = 3.5 wins against 0.5
    assert strength[0] / strength[1] == pytest.approx(7.0, rel=1e-8)


def test_elo_scale_and_seeded_bootstrap() -> None:
    elo = elo_scale(np.array([10.0, 1.0]))
    assert elo[0] - elo[1] == pytest.approx(400.0) and elo.mean() == pytest.approx(1000.0)
    outcomes = [(0, 1, 1.0)] * 30 + [(0, 1, 0.0)] * 10 + [(0, 1, 0.5)] * 4
    first = bootstrap_elo(outcomes, 2, prior=1.0, iters=300, seed=5)
    assert np.array_equal(first, bootstrap_elo(outcomes, 2, prior=1.0, iters=300, seed=5))
    point = elo_scale(bradley_terry(wins_matrix(outcomes, 2), prior=1.0))
    assert np.all(first[:, 0] < point) and np.all(point < first[:, 1]) and first[0, 0] > 1000.0


def test_cohen_kappa_equals_the_hand_computed_value() -> None:
    first = ["a", "a", "b", "b", "tie"]
    second = ["a", "b", "b", "b", "tie"]
    # observed agreement 4/5; chance (2*1 + 2*3 + 1*1) / 25 = 9/25; kappa = (0.8 - 0.36) / 0.64
    assert cohen_kappa(first, second) == pytest.approx(0.6875)
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "a"], ["a", "a"], labels=["a", "b"]) is None  # no variation: undefined
    # quadratic weights on 1-5 scores: 1 - sum(w O) / sum(w E), w = (i - j)^2
    first_scores, second_scores = [1, 2, 3], [1, 3, 3]
    observed = (2 - 3) ** 2 / 3
    expected = sum((a - b) ** 2 for a in first_scores for b in second_scores) / 9
    weighted = cohen_kappa(first_scores, second_scores, weights="quadratic", labels=[1, 2, 3, 4, 5])
    assert weighted == pytest.approx(1 - observed / expected)


def test_fleiss_kappa_equals_the_hand_computed_value() -> None:
    # 3 items, 2 raters: P_i = 1, 0, 1 -> mean 2/3; p_x = p_y = 1/2 -> P_e = 1/2; kappa = (2/3 - 1/2) / (1/2)
    items = [{"x": 2}, {"x": 1, "y": 1}, {"y": 2}]
    assert fleiss_kappa(items, ["x", "y", "tie"]) == pytest.approx(1 / 3)
    assert fleiss_kappa([], ["x"]) is None
