"""SQuAD-style exact match and token F1 (Rajpurkar et al., 2016, https://arxiv.org/abs/1606.05250).

English follows the official SQuAD evaluation script (v1.1/v2.0 `normalize_answer`): lower-case, remove
ASCII punctuation, remove the articles a/an/the, collapse whitespace; tokens are the whitespace-separated
words. Chinese is compared by characters (`char_level_tokens`: each CJK character a token, punctuation
- ASCII and full-width - and whitespace removed), as CMRC 2018's script does.

    exact_match = 1.0 if normalise(prediction) == normalise(reference) else 0.0
    token_f1    = 2 P R / (P + R),  P = |common| / |prediction tokens|,  R = |common| / |reference tokens|
                  (common: the multiset intersection of the two token bags)

As in SQuAD v2.0's script, when either side has no tokens F1 is 1.0 if both are empty, else 0.0.
With several references the score is the maximum over them (SQuAD's `metric_max_over_ground_truths`).

`search_answer` is the standard extractive span search over start/end logits (top-n starts x top-n ends,
end >= start, at most `max_answer_length` tokens, inside the context), `squad_scores` the corpus means.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from llmlab.eval.metrics.tokens import char_level_tokens, check_lang

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's English normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def answer_tokens(text: str, lang: str = "en") -> list[str]:
    """The tokens exact match and F1 compare: SQuAD-normalised words (en) or characters (zh)."""
    if check_lang(lang) == "zh":
        return char_level_tokens(text)
    return normalize_answer(text).split()


def _as_list(reference: str | Sequence[str]) -> list[str]:
    references = [reference] if isinstance(reference, str) else list(reference)
    if not references:
        raise ValueError("no reference answer given; pass at least one")
    return references


def exact_match(prediction: str, reference: str | Sequence[str], lang: str = "en") -> float:
    """1.0 if the normalised prediction equals the (any) normalised reference, else 0.0."""
    predicted = answer_tokens(prediction, lang)
    return max(float(predicted == answer_tokens(ref, lang)) for ref in _as_list(reference))


def _f1(predicted: list[str], gold: list[str]) -> float:
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, reference: str | Sequence[str], lang: str = "en") -> float:
    """SQuAD token F1 (0-1) of the prediction against the (best) reference; Chinese by characters."""
    predicted = answer_tokens(prediction, lang)
    return max(_f1(predicted, answer_tokens(ref, lang)) for ref in _as_list(reference))


def squad_scores(
    predictions: Sequence[str], references: Sequence[str | Sequence[str]], lang: str = "en"
) -> dict[str, float]:
    """Mean exact match and token F1 (0-1) over examples (SQuAD's corpus score is these means, x 100).

    Raises:
        ValueError: no examples, or not one reference (list) per prediction.
    """
    if not references:
        raise ValueError("no answers to score; pass at least one")
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; pass one per question")
    pairs = list(zip(predictions, references, strict=True))
    return {
        "exact_match": sum(exact_match(p, r, lang) for p, r in pairs) / len(pairs),
        "f1": sum(token_f1(p, r, lang) for p, r in pairs) / len(pairs),
    }


# ---------------------------------------------------------------------------------------------- span search
@dataclass(frozen=True)
class AnswerSpan:
    """An extractive answer: `context[start_char:end_char]` and its score (start logit + end logit)."""

    text: str
    start_char: int
    end_char: int
    score: float


def _top_indices(values: Sequence[float], n: int) -> list[int]:
    """Indices of the `n` largest values, largest first (ties: the lower index first)."""
    return sorted(range(len(values)), key=lambda i: (-values[i], i))[:n]


def search_answer(
    context: str,
    features: Sequence[tuple[Sequence[float], Sequence[float], Sequence[tuple[int, int] | None]]],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
) -> AnswerSpan:
    """The standard extractive-QA answer search over the windows ("features") of one context (BERT's SQuAD
    post-processing, Devlin et al. 2019, https://arxiv.org/abs/1810.04805; HF `run_qa`'s
    `postprocess_qa_predictions` without the null answer).

    For each window, every pair of the `n_best` highest start logits and `n_best` highest end logits is a
    candidate when both tokens lie inside the context (their offset is not None), end >= start and
    end - start + 1 <= `max_answer_length` tokens; its score is start_logit + end_logit. The best candidate over
    all windows wins; its text is the context between the start token's first and the end token's last
    character.

    Args:
        context: the passage the offsets point into.
        features: per window, (start logits (T,), end logits (T,), offsets (T,)): each token's (start, end)
            characters in `context`, or None for tokens outside it (question, special tokens, padding).
        n_best: start and end candidates per window.
        max_answer_length: longest answer in tokens.

    Returns:
        The best span, or an empty answer (score -inf) when no window has a valid candidate.
    """
    if n_best < 1 or max_answer_length < 1:
        raise ValueError(f"n_best and max_answer_length must be >= 1, got {n_best} and {max_answer_length}")
    best = AnswerSpan("", 0, 0, float("-inf"))
    for start_logits, end_logits, offsets in features:
        for s in _top_indices(start_logits, n_best):
            if offsets[s] is None:
                continue
            for e in _top_indices(end_logits, n_best):
                if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                    continue
                score = float(start_logits[s]) + float(end_logits[e])
                if score > best.score:
                    begin, end = offsets[s][0], offsets[e][1]
                    best = AnswerSpan(context[begin:end], begin, end, score)
    return best
