"""Classification metrics: accuracy, macro-F1 (scikit-learn) and expected calibration error.

    accuracy = (number of predictions equal to their label) / n
    macro-F1 = the unweighted mean over classes of F1_c = 2 P_c R_c / (P_c + R_c)
               (classes: every label that occurs in `labels` or `predictions`; F1_c = 0 when undefined)

Expected calibration error (Guo et al., 2017, "On Calibration of Modern Neural Networks",
https://arxiv.org/abs/1706.04599, eq. 3), with M equal-width confidence bins B_m = ((m-1)/M, m/M]
(a confidence of exactly 0 falls in the first bin):

    ECE = sum_m |B_m| / n * | acc(B_m) - conf(B_m) |

acc(B_m): the fraction of correct predictions in the bin; conf(B_m): their mean confidence. A perfectly
calibrated model (in every bin, accuracy equals mean confidence) has ECE 0.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Hashable, Sequence


def _check_pair(predictions: Sequence, labels: Sequence, what: str = "predictions") -> None:
    if not labels:
        raise ValueError(f"no {what} to score; pass at least one")
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} {what} but {len(labels)} labels; pass one per example")


def accuracy(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """The fraction (0-1) of predictions equal to their label."""
    _check_pair(predictions, labels)
    return sum(p == y for p, y in zip(predictions, labels, strict=True)) / len(labels)


def macro_f1(predictions: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """scikit-learn's macro-averaged F1 (0-1): the mean of the per-class F1 scores."""
    from sklearn.metrics import f1_score

    _check_pair(predictions, labels)
    return float(f1_score(list(labels), list(predictions), average="macro", zero_division=0))


def expected_calibration_error(confidences: Sequence[float], correct: Sequence[bool], n_bins: int = 10) -> float:
    """ECE (0-1) with `n_bins` equal-width bins over [0, 1] (Guo et al. 2017, https://arxiv.org/abs/1706.04599)."""
    _check_pair(confidences, correct, "confidences")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1 (got {n_bins})")
    upper_edges = [m / n_bins for m in range(1, n_bins)]  # m / M is exactly the float a user writes, e.g. 0.7
    bins: list[list[tuple[float, bool]]] = [[] for _ in range(n_bins)]
    for confidence, is_correct in zip(confidences, correct, strict=True):
        if not 0.0 <= confidence <= 1.0 or math.isnan(confidence):
            raise ValueError(f"confidence {confidence} is outside [0, 1]; pass probabilities")
        bins[bisect_left(upper_edges, confidence)].append((confidence, bool(is_correct)))
    total = 0.0
    for members in bins:
        if members:
            mean_confidence = sum(c for c, _ in members) / len(members)
            bin_accuracy = sum(ok for _, ok in members) / len(members)
            total += len(members) * abs(bin_accuracy - mean_confidence)
    return total / len(confidences)
