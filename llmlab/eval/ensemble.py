"""Ensembles of language models for the harness, and checkpoint averaging (model soups).

Two ways to combine models at *prediction* time (`EnsembleLM`, an `EvalLM` over member `EvalLM`s):

- ``mean``: probability averaging per continuation token (Lakshminarayanan et al. 2017,
  https://arxiv.org/abs/1612.01474). For continuation tokens ``y_1..y_n`` after context ``c``::

      log p_ens(y | c) = sum_t log( (1/M) sum_m p_m(y_t | c, y_<t) )        # = sum_t logsumexp_m(lp_m,t) - log M

  which needs the members to split text into the same tokens (equal `tokenizer_fingerprint`, else ValueError
  naming the two models). ``is_greedy`` is reported True when every member is greedy on every token: if each
  member ranks ``y_t`` first, so does their average, so this never claims a greedy match that is not one
  (it can miss one where members disagree but the average still ranks ``y_t`` first).
- ``vote``: majority voting. Multiple choice: each member's argmax choice is one vote (`vote_choices`, the hook
  `llmlab.eval.harness.runner` calls); generate_until: every member decodes greedily and the most common answer
  wins. Ties go to the earliest member whose answer is among the tied ones. Members need not share a tokenizer;
  their per-request ``loglikelihood`` is combined at the sequence level, ``log mean_m p_m(continuation)``.

``generate_until`` votes under both methods: decoding from the averaged next-token distribution would need each
member's whole distribution at every step, which `EvalLM` does not expose.

And one way to combine models at the *weight* level: `average_state_dicts`, the uniform (or weighted) "model
soup" of Wortsman et al. 2022 (https://arxiv.org/abs/2203.05482). It only makes sense for checkpoints that share
an initialisation (fine-tunes of one model, checkpoints/EMA of one run): independently initialised networks sit in
different basins and their average is usually much worse than either. ``llmlab average`` wraps it; the EMA of one
run's weights during training is `llmlab.train.ema` (``train.ema_decay``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import torch

from llmlab.eval.harness.lm import EvalLM

ENSEMBLE_METHODS = ("mean", "vote")


def majority(answers: Sequence[Hashable]) -> Hashable:
    """The most common answer; a tie goes to the earliest answer (member) among the tied ones."""
    counts = Counter(answers)
    top = max(counts.values())
    return next(a for a in answers if counts[a] == top)


class EnsembleLM:
    """Several `EvalLM`s behind one `EvalLM` (see the module docstring for ``mean`` and ``vote``).

    Args:
        members: the models (at least one; the same model twice is allowed).
        method: ``mean`` (probability averaging) or ``vote`` (majority voting).
        name: a label for tables; default ``mean(a, b)``.

    Raises:
        ValueError: an unknown method, no members, or (``mean``) members with different tokenizers.
    """

    def __init__(self, members: Sequence[EvalLM], method: str = "mean", name: str | None = None) -> None:
        if method not in ENSEMBLE_METHODS:
            raise ValueError(f"unknown ensemble method {method!r}; choose one of: {', '.join(ENSEMBLE_METHODS)}")
        if not members:
            raise ValueError("an ensemble needs at least one model")
        if method == "mean":
            first = members[0].tokenizer_fingerprint()
            for other in members[1:]:
                if other.tokenizer_fingerprint() != first:
                    raise ValueError(
                        f"models {members[0].name} and {other.name} have different tokenizers; probability "
                        "averaging needs one tokenizer (use --ensemble vote, or models that share a tokenizer)"
                    )
        self.members, self.method = list(members), method
        self.name = name or f"{method}({', '.join(m.name for m in self.members)})"
        self._scores: dict[tuple[str, str], list[float]] = {}  # per request: each member's ll (vote) / the mean's

    # ---- scoring ---------------------------------------------------------------------------------------------
    def score(self, requests: list[tuple[str, str]]) -> list[tuple[torch.Tensor, bool]]:
        """``mean``: (log of the members' average probability of each continuation token (n_tokens,), every
        member greedy) per request; each member scores every request once."""
        if self.method != "mean":
            raise ValueError("per-token log-probabilities of a voting ensemble are undefined; use method 'mean'")
        per_member = [m.score(requests) for m in self.members]  # M lists of ((n_tokens,), greedy)
        out = []
        for i, (_context, continuation) in enumerate(requests):
            rows = [scored[i][0].double() for scored in per_member]
            if len({len(r) for r in rows}) != 1:
                raise ValueError(f"members split the continuation {continuation!r} into different tokens")
            stacked = torch.stack(rows)  # (M, n_tokens)
            mean_lp = (torch.logsumexp(stacked, dim=0) - math.log(len(rows))).float()  # (n_tokens,)
            out.append((mean_lp, all(scored[i][1] for scored in per_member)))
        return out

    def loglikelihood(self, requests: list[tuple[str, str]]) -> list[tuple[float, bool]]:
        """(log p_ens(continuation | context), is_greedy) per request (see the module docstring)."""
        if self.method == "mean":
            scored = [(float(lp.sum()), greedy) for lp, greedy in self.score(requests)]
            self._scores.update({r: [ll] for r, (ll, _) in zip(requests, scored, strict=True)})
            return scored
        per_member = [m.loglikelihood(requests) for m in self.members]  # M lists of (ll, greedy)
        greedy = [all(res[i][1] for res in per_member) for i in range(len(requests))]
        out = []
        for i, request in enumerate(requests):
            lls = [res[i][0] for res in per_member]
            self._scores[request] = lls
            combined = torch.logsumexp(torch.tensor(lls, dtype=torch.float64), 0) - math.log(len(lls))
            out.append((float(combined), greedy[i]))
        return out

    def vote_choices(self, groups: list[list[tuple[str, str]]]) -> list[int]:
        """Per group of (context, choice) requests, the choice most members rank first (ties: earliest member);
        under ``mean`` the ensemble's own argmax (as the runner would pick).

        The runner calls this after `loglikelihood` on the same requests, whose scores are reused.
        """
        missing = [r for group in groups for r in group if r not in self._scores]
        if missing:
            self.loglikelihood(missing)
        picks = []
        for group in groups:
            table = [self._scores[r] for r in group]  # (n_choices, M) for vote, (n_choices, 1) for mean
            votes = [max(range(len(group)), key=lambda j: (table[j][m], -j)) for m in range(len(table[0]))]
            picks.append(int(majority(votes)))  # type: ignore[arg-type]
        self._scores.clear()
        return picks

    # ---- generation ------------------------------------------------------------------------------------------
    def generate_until(self, requests: list[tuple[str, dict]]) -> list[str]:
        """Every member's greedy continuation; the most common one per request (ties: earliest member)."""
        outputs = [m.generate_until(requests) for m in self.members]  # M lists of str
        return [str(majority([out[i] for out in outputs])) for i in range(len(requests))]

    def tokenizer_fingerprint(self) -> str:
        """The first member's (under ``mean`` all members share it)."""
        return self.members[0].tokenizer_fingerprint()


# ------------------------------------------------------------------------------------------- checkpoint averaging
def average_state_dicts(
    state_dicts: Iterable[Mapping[str, torch.Tensor]], weights: Sequence[float] | None = None
) -> dict[str, torch.Tensor]:
    """The (weighted) average of state dicts with the same keys and shapes: a model soup (Wortsman et al. 2022).

    Floating-point tensors are averaged in float64 and returned in the first state dict's dtype; other tensors
    (integer buffers) must be equal and are kept. `state_dicts` may be a generator (one model in memory at once).

    Args:
        state_dicts: the checkpoints' state dicts.
        weights: one non-negative weight per state dict (normalised to sum 1); None = uniform.

    Raises:
        ValueError: fewer than one state dict, a weight count that differs from the state dicts', bad weights, or
            keys / shapes / non-float values that differ (naming the state dict by its 0-based position).
    """
    if weights is not None:
        weights = [float(w) for w in weights]
        if not all(math.isfinite(w) and w >= 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights}")
    total: dict[str, torch.Tensor] = {}
    reference: dict[str, torch.Tensor] = {}
    count = 0
    for index, sd in enumerate(state_dicts):
        if weights is not None and index >= len(weights):
            raise ValueError(f"{len(weights)} weights for more state dicts; give one weight per checkpoint")
        w = 1.0 if weights is None else weights[index]
        if index == 0:
            reference = {k: v.detach() for k, v in sd.items()}
            total = {
                k: torch.zeros(v.shape, dtype=torch.float64) for k, v in reference.items() if v.is_floating_point()
            }
        else:
            _check_same_layout(reference, sd, index)
        for key, value in sd.items():
            if key in total:
                total[key] += w * value.detach().to("cpu", torch.float64)
        count += 1
    if count == 0:
        raise ValueError("nothing to average: give at least one checkpoint")
    if weights is not None and count != len(weights):
        raise ValueError(f"{len(weights)} weights for {count} checkpoints; give one weight per checkpoint")
    norm = float(count) if weights is None else sum(weights)
    return {k: (total[k] / norm).to(v.dtype) if k in total else v.clone() for k, v in reference.items()}


def _check_same_layout(reference: Mapping[str, torch.Tensor], sd: Mapping[str, Any], index: int) -> None:
    """ValueError unless `sd` has `reference`'s keys, shapes and (for non-float tensors) values."""
    if set(sd) != set(reference):
        key = sorted(set(sd) ^ set(reference))[0]
        raise ValueError(f"state dict {index} has other parameters than state dict 0 (e.g. {key})")
    for key, ref in reference.items():
        value = sd[key]
        if tuple(value.shape) != tuple(ref.shape):
            raise ValueError(
                f"state dict {index}: {key} has shape {tuple(value.shape)}, state dict 0 {tuple(ref.shape)}"
            )
        if not ref.is_floating_point() and not torch.equal(value.cpu(), ref.cpu()):
            raise ValueError(f"state dict {index}: non-float tensor {key} differs from state dict 0's")
