"""Ranking models from pairwise preferences, and agreement between raters.

Bradley-Terry model (R. A. Bradley and M. E. Terry, "Rank Analysis of Incomplete Block Designs: I. The Method
of Paired Comparisons", Biometrika 39, 1952): model i beats model j with probability p_i / (p_i + p_j). The
maximum-likelihood strengths are found with the minorization-maximization (MM) algorithm of D. R. Hunter, "MM
algorithms for generalized Bradley-Terry models", Annals of Statistics 32, 2004
(https://projecteuclid.org/euclid.aos/1079120141), eq. (3): p_i <- W_i / sum_j n_ij / (p_i + p_j). A tie counts
as half a win for each side. An optional `prior` adds that many virtual comparisons (split as a tie) to every
model pair, which keeps the strengths finite when a model never wins or never loses (the plain maximum
likelihood then does not exist). Confidence intervals come from a seeded bootstrap over the votes.

Agreement: Cohen's kappa (scikit-learn) between two raters on their common items, Fleiss' kappa
(statsmodels) over the items every rater labelled, and quadratic-weighted Cohen's kappa on 1-5 ratings.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence

import numpy as np

ELO_SCALE = 400.0 / math.log(10.0)  # Elo points per natural-log unit of strength (400 points = 10x odds)
ELO_CENTRE = 1000.0


def wins_matrix(outcomes: Sequence[tuple[int, int, float]], n_models: int) -> np.ndarray:
    """(M, M) matrix w with w[i, j] = wins of i over j, from (i, j, score of i) outcomes: score 1 = i won,
    0 = j won, 0.5 = tie (half a win each)."""
    wins = np.zeros((n_models, n_models))
    for i, j, score in outcomes:
        wins[i, j] += score
        wins[j, i] += 1.0 - score
    return wins


def bradley_terry(wins: np.ndarray, *, prior: float = 0.0, tol: float = 1e-10, max_iter: int = 100_000) -> np.ndarray:
    """Bradley-Terry strengths (M,) by Hunter's MM iteration, normalised to sum to 1.

    Args:
        wins: (M, M) wins matrix (`wins_matrix`), w[i, j] = (possibly fractional) wins of i over j.
        prior: virtual comparisons added to every pair of models, half a win each way (0 = plain ML).
        tol: stop when no log-strength moves more than this.

    Raises:
        ValueError: without a prior, when the maximum-likelihood estimate does not exist (some model never
            wins, or the models split into groups one of which never beats the other).
    """
    wins = np.asarray(wins, dtype=float) + (prior / 2.0) * (1.0 - np.eye(len(wins)))
    n_models = len(wins)
    if prior <= 0.0 and not _strongly_connected(wins > 0):
        raise ValueError(
            "the Bradley-Terry maximum likelihood does not exist for these votes (a model never wins "
            "or never loses against the rest); use a prior > 0"
        )
    games = wins + wins.T  # (M, M) comparisons between i and j
    total_wins = wins.sum(axis=1)  # (M,)
    strength = np.full(n_models, 1.0 / n_models)
    for _ in range(max_iter):
        denominator = (games / (strength[:, None] + strength[None, :])).sum(axis=1)  # (M,)
        updated = total_wins / denominator
        updated /= updated.sum()
        moved = np.max(np.abs(np.log(updated) - np.log(strength)))
        strength = updated
        if moved < tol:
            break
    return strength


def _strongly_connected(edges: np.ndarray) -> bool:
    """True when every node reaches every other along edges[i, j] (i beat j at least partly)."""
    n = len(edges)
    for adjacency in (edges, edges.T):
        seen, frontier = {0}, [0]
        while frontier:
            node = frontier.pop()
            for nxt in np.flatnonzero(adjacency[node]):
                if int(nxt) not in seen:
                    seen.add(int(nxt))
                    frontier.append(int(nxt))
        if len(seen) < n:
            return False
    return True


def elo_scale(strength: np.ndarray) -> np.ndarray:
    """Strengths on an Elo-like scale: 400 points per tenfold odds, centred on 1000."""
    log_strength = np.log(strength)
    return ELO_CENTRE + ELO_SCALE * (log_strength - log_strength.mean())


def bootstrap_elo(
    outcomes: Sequence[tuple[int, int, float]],
    n_models: int,
    *,
    prior: float,
    iters: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> np.ndarray:
    """(M, 2) percentile confidence intervals of the Elo-scale strengths, refitting on `iters` resamples of the
    votes (with replacement) drawn by a `seed`ed generator."""
    rng = np.random.default_rng(seed)
    outcomes = list(outcomes)
    samples = np.empty((iters, n_models))
    for k in range(iters):
        picks = rng.integers(0, len(outcomes), size=len(outcomes))
        samples[k] = elo_scale(bradley_terry(wins_matrix([outcomes[i] for i in picks], n_models), prior=prior))
    tail = (1.0 - confidence) / 2.0 * 100.0
    return np.percentile(samples, [tail, 100.0 - tail], axis=0).T


def cohen_kappa(
    first: Sequence[Hashable],
    second: Sequence[Hashable],
    *,
    weights: str | None = None,
    labels: Sequence[Hashable] | None = None,
) -> float | None:
    """Cohen's kappa of two raters' labels on the same items (scikit-learn); None when undefined (no items, or
    both raters used one and the same label throughout)."""
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import cohen_kappa_score

    if not first:
        return None
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # undefined: reported as None
        value = float(cohen_kappa_score(list(first), list(second), labels=labels, weights=weights))
    return None if math.isnan(value) else value


def fleiss_kappa(items: Sequence[Mapping[Hashable, int]], categories: Sequence[Hashable]) -> float | None:
    """Fleiss' kappa (statsmodels) over items each labelled by the same number of raters; `items` holds per item
    the count of raters choosing each category. None when undefined (no items, or no variation at all)."""
    from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss

    if not items:
        return None
    table = np.array([[item.get(c, 0) for c in categories] for item in items], dtype=float)  # (items, categories)
    with np.errstate(divide="ignore", invalid="ignore"):
        value = float(statsmodels_fleiss(table, method="fleiss"))
    return None if math.isnan(value) or math.isinf(value) else value
