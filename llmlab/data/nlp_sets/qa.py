"""Generated extractive QA in SQuAD format (zh and en) — passages and questions from stated templates, not
natural text.

A passage introduces two or three people (names from the disjoint pools of `llmlab.data.nlp_sets.lexicon`),
each with two to four facts (`FACTS`: birthplace, workplace, home town, age, hobby, school), every fact value
distinct within the passage; the question asks one fact of one person ("Where was X born?") or, for the place /
organisation facts, who it belongs to ("Who was born in Y?"). The other people's facts are distractors of the
same kind. Records: {"id", "context", "question", "answers": {"text": [answer], "answer_start": [offset]},
"fact"}; every offset is checked to slice its answer out of the context.
"""

from __future__ import annotations

import random
from typing import Any

from llmlab.data.nlp_sets._common import Splits, check_squad, fill
from llmlab.data.nlp_sets.lexicon import Pool, build_name_splits

# fact -> (value kind, {lang: (statement, question about the value, question about the person or None)})
FACTS: dict[str, tuple[str, dict[str, tuple[str, str, str | None]]]] = {
    "born_in": ("LOC", {
        "zh": ("{P}出生于{V}。", "{P}出生于哪里？", "谁出生于{V}？"),
        "en": ("{P} was born in {V}.", "Where was {P} born?", "Who was born in {V}?")}),
    "works_for": ("ORG", {
        "zh": ("{P}目前在{V}工作。", "{P}在哪个机构工作？", "谁在{V}工作？"),
        "en": ("{P} works for {V}.", "Which organisation does {P} work for?", "Who works for {V}?")}),
    "lives_in": ("LOC", {
        "zh": ("{P}现在住在{V}。", "{P}现在住在哪里？", "谁现在住在{V}？"),
        "en": ("{P} now lives in {V}.", "Where does {P} live now?", "Who lives in {V}?")}),
    "age": ("AGE", {
        "zh": ("{P}今年{V}岁。", "{P}今年多少岁？", None),
        "en": ("{P} is {V} years old.", "How old is {P}?", None)}),
    "hobby": ("HOBBY", {
        "zh": ("{P}平时喜欢{V}。", "{P}平时喜欢做什么？", None),
        "en": ("In free time {P} likes {V}.", "What does {P} like to do in free time?", None)}),
    "studied_at": ("ORG", {
        "zh": ("{P}曾经在{V}学习。", "{P}曾经在哪里学习？", "谁曾经在{V}学习？"),
        "en": ("{P} once studied at {V}.", "Where did {P} study?", "Who studied at {V}?")}),
}  # fmt: skip
HOBBIES = {
    "zh": ("打篮球", "下围棋", "弹钢琴", "读小说", "爬山", "游泳", "画画", "摄影", "钓鱼", "跑步", "做饭", "唱歌",
           "养花", "骑自行车", "写书法", "踢足球"),
    "en": ("playing basketball", "playing chess", "playing the piano", "reading novels", "hiking", "swimming",
           "painting", "taking photos", "fishing", "running", "cooking", "singing", "gardening", "cycling",
           "writing poems", "playing football"),
}  # fmt: skip
DEFAULT_SIZES = {"train": 2000, "val": 300, "test": 300}


def _value(kind: str, pool: dict[str, tuple[str, ...]], lang: str, rng: random.Random) -> str:
    if kind == "AGE":
        return str(rng.randint(18, 80))
    if kind == "HOBBY":
        return rng.choice(HOBBIES[lang])
    return rng.choice(pool[kind])


def passage_facts(pool: dict[str, tuple[str, ...]], lang: str, rng: random.Random) -> list[tuple[str, str, str]]:
    """(person, fact, value) triples of one passage: 2-3 distinct people, 2-4 facts each, all values distinct."""
    people: list[str] = []
    while len(people) < rng.randint(2, 3):
        name = rng.choice(pool["PER"])
        if name not in people:
            people.append(name)
    used: set[str] = set(people)
    triples = []
    for person in people:
        for fact in rng.sample(sorted(FACTS), rng.randint(2, 4)):
            value = _value(FACTS[fact][0], pool, lang, rng)
            while value in used or any(value in u or u in value for u in used):
                value = _value(FACTS[fact][0], pool, lang, rng)
            used.add(value)
            triples.append((person, fact, value))
    return triples


def qa_record(triples: list[tuple[str, str, str]], lang: str, rng: random.Random, rid: str) -> dict[str, Any]:
    """One SQuAD record: the passage of `triples` and a question about one of them (checked with `check_squad`)."""
    sep = "" if lang == "zh" else " "
    parts, offset, spans = [], 0, []
    for person, fact, value in triples:
        sentence, slot = fill(FACTS[fact][1][lang][0], {"P": person, "V": value})
        spans.append((offset + slot["P"][0], offset + slot["V"][0]))
        parts.append(sentence)
        offset += len(sentence) + len(sep)
    context = sep.join(parts)
    k = rng.randrange(len(triples))
    person, fact, value = triples[k]
    _, ask_value, ask_person = FACTS[fact][1][lang]
    if ask_person is not None and rng.random() < 0.3:
        question, answer, start = ask_person.replace("{V}", value), person, spans[k][0]
    else:
        question, answer, start = ask_value.replace("{P}", person), value, spans[k][1]
    record = {"id": rid, "context": context, "question": question,
              "answers": {"text": [answer], "answer_start": [start]}, "fact": fact}  # fmt: skip
    check_squad(record)
    return record


def build_qa(
    train: int | None = None, val: int | None = None, test: int | None = None, *, lang: str = "zh", seed: int = 0
) -> Splits:
    """{"train", "val", "test"} lists of SQuAD-format records (sizes default to `DEFAULT_SIZES`); people, places
    and organisations never cross splits.

    Raises:
        ValueError: an unknown `lang` or a negative size.
    """

    def make_rows(pool: Pool, rng: random.Random, n: int, split: str) -> list[dict[str, Any]]:
        return [qa_record(passage_facts(pool, lang, rng), lang, rng, f"{lang}-{split}-{i}") for i in range(n)]

    sizes = {"train": train, "val": val, "test": test}
    return build_name_splits("qa", lang, seed, sizes, DEFAULT_SIZES, make_rows)
