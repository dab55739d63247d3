"""Seeded 2-digit addition/subtraction word problems with exact answers: a verifiable-reward task for GRPO
(``reward.functions=[arithmetic]``, `llmlab.align.rewards.arithmetic_reward`) and its held-out accuracy.

    train, test = arithmetic_splits(n_train=2000, n_test=300, seed=0, lang="en")
    train[0]  # {"prompt": "Mia has 47 stickers. She gets 25 more. How many stickers does Mia have now? ...",
              #  "answer": 72, "a": 47, "b": 25, "op": "+"}
    write_arithmetic_splits("data/arithmetic", n_train=2000, n_test=300)   # a new folder: train.jsonl, test.jsonl

Operands are 10..99; a subtraction never goes below zero. Train and test share no (operation, a, b) problem,
whatever the wording. ``lang="zh"`` writes the problems in Chinese.

    llmlab data arithmetic --out data/arithmetic [--train 2000] [--test 300] [--lang en|zh] [--seed 0]
        [--style instruct|fewshot|equation] [--overwrite]
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

INSTRUCTIONS = {"en": "Answer with the number only.", "zh": "只回答数字。"}
NAMES = {"en": ["Mia", "Leo", "Ava", "Sam", "Noah", "Emma", "Omar", "Lily"], "zh": ["小明", "小红", "小刚", "小丽"]}
ITEMS = {
    "en": ["apples", "stickers", "marbles", "books", "coins", "cards", "pencils", "shells"],
    "zh": [("个", "苹果"), ("张", "贴纸"), ("颗", "弹珠"), ("本", "书"), ("枚", "硬币"), ("支", "铅笔")],
}
TEMPLATES = {
    ("en", "+"): [
        "{name} has {a} {item}. {name} gets {b} more. How many {item} does {name} have now?",
        "There are {a} {item} in a box and {b} {item} on the table. How many {item} are there in all?",
        "{name} collected {a} {item} on Monday and {b} {item} on Tuesday. How many {item} in total?",
    ],
    ("en", "-"): [
        "{name} has {a} {item} and gives {b} of them away. How many {item} does {name} have left?",
        "There were {a} {item} in a box. {name} took {b} out. How many {item} are still in the box?",
        "{name} had {a} {item} and lost {b}. How many {item} are left?",
    ],
    ("zh", "+"): ["{name}有{a}{unit}{item}，又得到了{b}{unit}。{name}现在有多少{unit}{item}？",
                  "盒子里有{a}{unit}{item}，桌上有{b}{unit}{item}。一共有多少{unit}{item}？"],
    ("zh", "-"): ["{name}有{a}{unit}{item}，送给朋友{b}{unit}。{name}还剩多少{unit}{item}？",
                  "盒子里原来有{a}{unit}{item}，{name}拿走了{b}{unit}。盒子里还有多少{unit}{item}？"],
}  # fmt: skip
LANGS = ("en", "zh")
STYLES = ("instruct", "fewshot", "equation")
EXEMPLARS = {("+", 23, 14), ("-", 58, 25)}
# Two solved problems shown before the question in the ``fewshot`` style (a small model needs them to answer
# with the number first); their (op, a, b) never appear as problems.
FEWSHOT = {
    "en": ("Question: Ben has 23 pens. Ben gets 14 more. How many pens does Ben have now?\nAnswer: 37\n\n"
           "Question: There were 58 eggs in a box. Ann took 25 out. How many eggs are still in the box?\n"
           "Answer: 33\n\nQuestion: {question}\nAnswer:"),
    "zh": ("问题：小华有23支笔，又得到了14支。小华现在有多少支笔？\n答案：37\n\n"
           "问题：盒子里原来有58个鸡蛋，小安拿走了25个。盒子里还有多少个鸡蛋？\n答案：33\n\n问题：{question}\n答案："),
}  # fmt: skip


def make_problem(op: str, a: int, b: int, rng: random.Random, lang: str = "en", style: str = "instruct") -> dict:
    """One word problem ``{"prompt", "answer", "a", "b", "op"}`` for ``a op b`` in a random wording.

    `style`: ``instruct`` (the question and "Answer with the number only.": for a chat template), ``fewshot``
    (two solved problems, then ``Question: ...\\nAnswer:``: for ``data.template=plain``) or ``equation`` (the
    same, with the solved answers written as ``23 + 14 = 37``: score with the ``arithmetic_final`` reward).
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; choose one of: {', '.join(STYLES)}")
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; choose one of: {', '.join(LANGS)}")
    name = rng.choice(NAMES[lang])
    if lang == "zh":
        unit, item = rng.choice(ITEMS["zh"])
        text = rng.choice(TEMPLATES[lang, op]).format(name=name, a=a, b=b, unit=unit, item=item)
    else:
        item = rng.choice(ITEMS["en"])
        text = rng.choice(TEMPLATES[lang, op]).format(name=name, a=a, b=b, item=item)
    if style == "instruct":
        text += (" " if lang == "en" else "") + INSTRUCTIONS[lang]
    else:
        text = FEWSHOT[lang].format(question=text)
    if style == "equation":  # the solved examples show the calculation: "Answer: 23 + 14 = 37"
        text = text.replace(" 37\n", " 23 + 14 = 37\n").replace(" 33\n", " 58 - 25 = 33\n")
        text = text.replace("：37\n", "：23 + 14 = 37\n").replace("：33\n", "：58 - 25 = 33\n")
    return {"prompt": text, "answer": a + b if op == "+" else a - b, "a": a, "b": b, "op": op}


def arithmetic_splits(
    n_train: int, n_test: int, seed: int = 0, lang: str = "en", style: str = "instruct"
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, test) problems, half additions and half subtractions in random order, no (op, a, b) in both."""
    if n_train < 0 or n_test < 0:
        raise ValueError(f"problem counts must be >= 0, got train={n_train} test={n_test}")
    space = [("+", a, b) for a in range(10, 100) for b in range(10, 100)]
    space += [("-", a, b) for a in range(10, 100) for b in range(10, a + 1)]
    space = [p for p in space if p not in EXEMPLARS]
    if n_train + n_test > len(space):
        raise ValueError(f"only {len(space)} distinct problems exist; ask for fewer than {n_train + n_test}")
    rng = random.Random(seed)
    adds = [p for p in space if p[0] == "+"]
    subs = [p for p in space if p[0] == "-"]
    rng.shuffle(adds)
    rng.shuffle(subs)
    total = n_train + n_test
    picked = adds[: (total + 1) // 2] + subs[: total // 2]
    rng.shuffle(picked)
    problems = [make_problem(op, a, b, rng, lang, style) for op, a, b in picked]
    return problems[n_test:], problems[:n_test]


def write_arithmetic_splits(
    out_dir: str | Path,
    n_train: int = 2000,
    n_test: int = 300,
    seed: int = 0,
    lang: str = "en",
    style: str = "instruct",
    *,
    overwrite: bool = False,
) -> tuple[Path, Path]:
    """Write ``train.jsonl`` and ``test.jsonl`` as a new folder `out_dir` (published atomically, with llmlab's
    output marker); returns their paths.

    Raises:
        ValueError: `out_dir` is a folder llmlab did not create, or an earlier output without `overwrite`
            (`llmlab.io.check_output_dir`); impossible sizes, language or style — all before anything is written.
    """
    from llmlab.io import atomic_write_text, building_output, check_output_dir

    train, test = arithmetic_splits(n_train, n_test, seed, lang, style)
    out = Path(out_dir)
    check_output_dir(out, overwrite=overwrite)
    with building_output(out, "data arithmetic") as tmp:
        for name, rows in (("train.jsonl", train), ("test.jsonl", test)):
            atomic_write_text(tmp / name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out / "train.jsonl", out / "test.jsonl"
