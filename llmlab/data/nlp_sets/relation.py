"""Generated relation-classification sets (zh and en) — sentences from stated templates, not natural text.

Each template holds a head slot `{H}` and a tail slot `{T}` and states one relation between them (`LABELS`):
born_in (person -> place), located_in (organisation -> place), works_for (person -> organisation), or
no_relation (both entities are mentioned but the sentence states none of the three). The head may come after
the tail in the text ("在{T}出生的{H}"). Names come from the disjoint train/val/test pools of
`llmlab.data.nlp_sets.lexicon`, so test entities are never seen in training. Records: {"text", "head": [start,
end], "tail": [start, end], "label", "head_type", "tail_type"} with character offsets (end exclusive), checked
to cut the entity names out of the text.
"""

from __future__ import annotations

import random
from typing import Any

from llmlab.data.nlp_sets._common import Splits, fill
from llmlab.data.nlp_sets.lexicon import Pool, build_name_splits

LABELS = ("born_in", "located_in", "works_for", "no_relation")
# (label, head type, tail type, {lang: templates})
TEMPLATES: tuple[tuple[str, str, str, dict[str, tuple[str, ...]]], ...] = (
    ("born_in", "PER", "LOC", {
        "zh": ("{H}出生于{T}。", "{H}于1980年出生在{T}。", "在{T}出生的{H}后来成了一名医生。", "{H}的出生地是{T}。"),
        "en": ("{H} was born in {T}.", "{H} was born in {T} in 1980.", "Born in {T}, {H} later became a doctor.",
               "The birthplace of {H} is {T}.")}),
    ("located_in", "ORG", "LOC", {
        "zh": ("{H}位于{T}。", "{H}的总部设在{T}。", "{T}是{H}所在地。", "{H}坐落在{T}的市中心。"),
        "en": ("{H} is located in {T}.", "{H} has its headquarters in {T}.", "{T} is home to {H}.",
               "{H} stands in the centre of {T}.")}),
    ("works_for", "PER", "ORG", {
        "zh": ("{H}就职于{T}。", "{H}目前在{T}担任工程师。", "{T}聘请{H}为顾问。", "{H}是{T}的员工。"),
        "en": ("{H} works for {T}.", "{H} is an engineer at {T}.", "{T} hired {H} as an adviser.",
               "{H} is on the staff of {T}.")}),
    ("no_relation", "PER", "LOC", {
        "zh": ("{H}在电视上看到了关于{T}的新闻。", "{H}从来没有去过{T}。", "{H}听说{T}的冬天很冷。"),
        "en": ("{H} saw a news report about {T}.", "{H} has never been to {T}.",
               "{H} heard that winters in {T} are cold.")}),
    ("no_relation", "PER", "ORG", {
        "zh": ("{H}在报纸上读到了{T}的消息。", "{H}不太了解{T}。", "{H}路过{T}时拍了一张照片。"),
        "en": ("{H} read about {T} in the paper.", "{H} knows little about {T}.",
               "{H} took a photo while passing {T}.")}),
    ("no_relation", "ORG", "LOC", {
        "zh": ("{H}发布了一份关于{T}旅游业的报告。", "{H}的专家讨论了{T}的交通问题。"),
        "en": ("{H} published a report on tourism in {T}.", "Experts from {H} discussed traffic in {T}.")}),
)  # fmt: skip
DEFAULT_SIZES = {"train": 2000, "val": 300, "test": 300}


def relation_record(template: str, label: str, head: tuple[str, str], tail: tuple[str, str]) -> dict[str, Any]:
    """The record of `template` with `head` / `tail` ((type, name)) filled in, offsets checked."""
    text, spans = fill(template, {"H": head[1], "T": tail[1]})
    record = {"text": text, "head": list(spans["H"]), "tail": list(spans["T"]), "label": label,
              "head_type": head[0], "tail_type": tail[0]}  # fmt: skip
    check_relation(record)
    return record


def check_relation(record: dict[str, Any]) -> None:
    """Raise ValueError unless head and tail are valid, non-overlapping character spans of the text."""
    (hs, he), (ts, te) = record["head"], record["tail"]
    n = len(record["text"])
    if not (0 <= hs < he <= n and 0 <= ts < te <= n) or (hs < te and ts < he):
        raise ValueError(f"bad entity spans {record['head']} {record['tail']} in {record['text']!r}")
    if record["label"] not in LABELS:
        raise ValueError(f"unknown relation label {record['label']!r}")


def build_relation(
    train: int | None = None, val: int | None = None, test: int | None = None, *, lang: str = "zh", seed: int = 0
) -> Splits:
    """{"train", "val", "test"} lists of relation records (sizes default to `DEFAULT_SIZES`): labels drawn
    uniformly, then one of the label's templates; entity names never cross splits.

    Raises:
        ValueError: an unknown `lang` or a negative size.
    """

    def make_rows(pool: Pool, rng: random.Random, n: int, split: str) -> list[dict[str, Any]]:
        rows = []
        for _ in range(n):
            label = rng.choice(LABELS)
            label_, htype, ttype, by_lang = rng.choice([t for t in TEMPLATES if t[0] == label])
            head, tail = (htype, rng.choice(pool[htype])), (ttype, rng.choice(pool[ttype]))
            rows.append(relation_record(rng.choice(by_lang[lang]), label_, head, tail))
        return rows

    sizes = {"train": train, "val": val, "test": test}
    return build_name_splits("relation", lang, seed, sizes, DEFAULT_SIZES, make_rows)
