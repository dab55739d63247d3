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
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

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
