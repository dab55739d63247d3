"""Standard errors for evaluation scores: the analytic one of a mean, and the bootstrap one of any corpus metric.

    mean_stderr:      mean = sum(x) / n,  stderr = s / sqrt(n),  s = sqrt(sum (x - mean)^2 / (n - 1))
    bootstrap_stderr: draw `iters` resamples of the n example indices with replacement, recompute the corpus
                      metric on each, and return the sample standard deviation (ddof = 1) of those values
                      (Efron & Tibshirani, 1993, "An Introduction to the Bootstrap"; Koehn, 2004,
                      https://aclanthology.org/W04-3250/ for BLEU).

Use mean_stderr for per-example metrics (accuracy, exact match, F1) and bootstrap_stderr for corpus-level
ones (BLEU, chrF, macro-F1, ECE), which are not means of per-example values.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence


def _sample_std(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean) with the sample standard deviation (ddof=1); stderr is nan for n=1."""
    if not values:
        raise ValueError("no values to average; pass at least one")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, _sample_std(values) / math.sqrt(len(values))


def bootstrap_stderr(metric: Callable[[list[int]], float], n: int, iters: int = 1000, seed: int = 0) -> float:
    """Bootstrap standard error of `metric(indices)` over resamples of range(n); deterministic given `seed`."""
    if n < 1:
        raise ValueError(f"bootstrap needs at least one example (got n={n})")
    if iters < 2:
        raise ValueError(f"bootstrap needs at least 2 resamples (got iters={iters})")
    rng = random.Random(seed)
    values = [metric([rng.randrange(n) for _ in range(n)]) for _ in range(iters)]
    return _sample_std(values)
