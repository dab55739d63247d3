"""Generated NER sets (BIO tags over PER / LOC / ORG), zh and en — generated from stated templates, not natural
text.

Each sentence is one of `TEMPLATES[lang]` with its `{PER}`, `{PER2}`, `{LOC}`, `{LOC2}`, `{ORG}`, `{ORG2}` slots
filled with names from `llmlab.data.nlp_sets.lexicon` (zh: jieba dictionary words tagged nr/ns/nt; en: stated
lists and IANA time-zone city names). Names are drawn from disjoint train/val/test pools, so the test set
measures tagging of names never seen in training (the templates are shared). Tokens: one per character (zh),
regex words and punctuation marks (en). Records: {"text", "tokens", "tags", "entities": [{"text", "type",
"start", "end"}], "template"} with character offsets (end exclusive).
"""

from __future__ import annotations

import random
from typing import Any

from llmlab.data.nlp_sets._common import Splits, bio_record, fill
from llmlab.data.nlp_sets.lexicon import Pool, build_name_splits

ZH_TEMPLATES = (
    "{PER}昨天去了{LOC}。",
    "{PER}毕业于{ORG}，现在住在{LOC}。",
    "{ORG}宣布{PER}将出任新的负责人。",
    "据{ORG}消息，{LOC}今年的降雨量明显增加。",
    "{PER}和{PER2}一起从{LOC}出发前往{LOC2}。",
    "我在{LOC}遇到了{PER}。",
    "{PER}在{ORG}工作了十年。",
    "{LOC}与{LOC2}之间新开通了一条高速公路。",
    "{ORG}的代表团今天抵达{LOC}。",
    "记者从{ORG}获悉，{PER}已经离开{LOC}。",
    "{PER}出生在{LOC}，后来加入了{ORG}。",
    "这次会议由{ORG}和{ORG2}联合举办。",
    "{PER}对{PER2}说，明天要去{ORG}开会。",
    "今年夏天{PER}打算带孩子去{LOC}旅游。",
    "{LOC}的居民都很喜欢{PER}写的书。",
    "{PER}向{ORG}捐赠了一批图书。",
    "来自{LOC}的{PER}获得了比赛的冠军。",
    "{ORG}在{LOC}设立了新的办事处。",
    "听说{PER}下个月要调到{ORG}。",
    "{PER}的老家在{LOC}附近。",
    "昨天下午，{PER}在{LOC}参观了{ORG}。",
    "{ORG}邀请{PER}做了一场报告。",
    "{PER}从{ORG}辞职后回到了{LOC}。",
    "{LOC}是{PER}最喜欢的地方。",
    "{PER}和{PER2}是{ORG}的同事。",
    "下周{ORG}将在{LOC2}召开年会。",
    "{PER}给远在{LOC}的父母寄了一封信。",
    "今天的天气很好，我们去公园散步吧。",
    "这本书的内容非常有意思。",
    "请把窗户关上，外面风很大。",
)
EN_TEMPLATES = (
    "{PER} flew to {LOC} yesterday.",
    "{PER} graduated from {ORG} and now lives in {LOC}.",
    "{ORG} announced that {PER} will become its new director.",
    "According to {ORG}, rainfall in {LOC} rose sharply this year.",
    "{PER} and {PER2} drove from {LOC} to {LOC2}.",
    "I met {PER} in {LOC} last spring.",
    "{PER} has worked at {ORG} for ten years.",
    "A new rail line now connects {LOC} and {LOC2}.",
    "A delegation from {ORG} arrived in {LOC} today.",
    "Reporters learned from {ORG} that {PER} has left {LOC}.",
    "{PER} was born in {LOC} and later joined {ORG}.",
    "The meeting was organised by {ORG} and {ORG2}.",
    "{PER} told {PER2} about the meeting at {ORG}.",
    "This summer {PER} plans to take the children to {LOC}.",
    "People in {LOC} love the books that {PER} writes.",
    "{PER} donated a collection of books to {ORG}.",
    "{PER}, who comes from {LOC}, won the final.",
    "{ORG} opened a new office in {LOC}.",
    "We heard that {PER} will move to {ORG} next month.",
    "{PER} grew up near {LOC}.",
    "Yesterday afternoon {PER} visited {ORG} in {LOC}.",
    "{ORG} invited {PER} to give a talk.",
    "After leaving {ORG}, {PER} returned to {LOC}.",
    "{LOC} is the place {PER} likes best.",
    "{PER} and {PER2} are colleagues at {ORG}.",
    "Next week {ORG} will hold its annual meeting in {LOC2}.",
    "{PER} sent a letter to the family in {LOC}.",
    "The weather is lovely today, so let us walk in the park.",
    "This book is really interesting.",
    "Please close the window, it is windy outside.",
)
TEMPLATES = {"zh": ZH_TEMPLATES, "en": EN_TEMPLATES}
SLOT_TYPES = {"PER": "PER", "PER2": "PER", "LOC": "LOC", "LOC2": "LOC", "ORG": "ORG", "ORG2": "ORG"}
DEFAULT_SIZES = {"train": 3000, "val": 500, "test": 500}


def draw_slots(template: str, pool: dict[str, tuple[str, ...]], rng: random.Random) -> dict[str, str]:
    """A value for every slot of `template` from `pool` ({type: names}); the two slots of one type differ."""
    values: dict[str, str] = {}
    for slot, etype in SLOT_TYPES.items():
        if "{" + slot + "}" in template:
            taken = set(values.values())
            values[slot] = rng.choice(pool[etype])
            while values[slot] in taken:
                values[slot] = rng.choice(pool[etype])
    return values


def ner_record(template: str, values: dict[str, str], lang: str) -> dict[str, Any]:
    """The BIO record of `template` filled with `values` (entities in text order)."""
    text, spans = fill(template, values)
    entities = sorted(({"type": SLOT_TYPES[s], "start": a, "end": b} for s, (a, b) in spans.items()),
                      key=lambda e: e["start"])  # fmt: skip
    return {**bio_record(text, entities, lang), "template": TEMPLATES[lang].index(template)}


def build_ner(
    train: int | None = None, val: int | None = None, test: int | None = None, *, lang: str = "zh", seed: int = 0
) -> Splits:
    """{"train", "val", "test"} lists of BIO records (sizes default to `DEFAULT_SIZES`); names never cross splits.

    Raises:
        ValueError: an unknown `lang` or a negative size.
    """

    def make_rows(pool: Pool, rng: random.Random, n: int, split: str) -> list[dict[str, Any]]:
        templates = (rng.choice(TEMPLATES[lang]) for _ in range(n))
        return [ner_record(t, draw_slots(t, pool, rng), lang) for t in templates]

    sizes = {"train": train, "val": val, "test": test}
    return build_name_splits("ner", lang, seed, sizes, DEFAULT_SIZES, make_rows)
