"""The labelled NLP sets (llmlab.data.nlp_sets): determinism, disjoint splits, consistent offsets and tags."""

from __future__ import annotations

import ast
import re
import textwrap
from collections import Counter

import pytest

from llmlab.data.nlp_sets import (
    RELATION_LABELS,
    build_cedict,
    build_docstrings,
    build_ner,
    build_qa,
    build_relation,
    build_sentiment,
    check_bio,
    check_relation,
    check_squad,
)
from llmlab.data.nlp_sets._common import bio_record, fill, split_pool
from llmlab.data.nlp_sets.cedict import clean_sense
from llmlab.data.nlp_sets.docstrings import summary_line
from llmlab.data.nlp_sets.lexicon import name_pools


# ------------------------------------------------------------------------------------------- shared pieces
def test_fill_reports_slot_spans():
    text, spans = fill("{P}去了{L}。{P2}也去了", {"P": "张三丰", "L": "北京市", "P2": "李四"})
    assert text == "张三丰去了北京市。李四也去了"
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {"P": "张三丰", "L": "北京市", "P2": "李四"}


def test_bio_record_tags_words_and_characters():
    rec = bio_record("Ann Lee met Bo in New York.", [{"type": "PER", "start": 0, "end": 7},
                                                    {"type": "LOC", "start": 18, "end": 26}], "en")  # fmt: skip
    assert rec["tokens"] == ["Ann", "Lee", "met", "Bo", "in", "New", "York", "."]
    assert rec["tags"] == ["B-PER", "I-PER", "O", "O", "O", "B-LOC", "I-LOC", "O"]
    zh = bio_record(
        "王小明在上海", [{"type": "PER", "start": 0, "end": 3}, {"type": "LOC", "start": 4, "end": 6}], "zh"
    )
    assert zh["tags"] == ["B-PER", "I-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    with pytest.raises(ValueError, match="token boundaries"):
        bio_record("Annie went home.", [{"type": "PER", "start": 0, "end": 3}], "en")


@pytest.mark.parametrize("tags", [["I-PER"], ["B-PER", "I-LOC"], ["O", "I-ORG"], ["B-XYZ"], ["S-PER"]])
def test_check_bio_rejects_invalid_sequences(tags):
    with pytest.raises(ValueError):
        check_bio(tags)


def test_split_pool_is_seeded_and_disjoint():
    parts = split_pool(range(100), (0.8, 0.1, 0.1), seed=3)
    assert [len(p) for p in parts] == [80, 10, 10] and sorted(sum(parts, [])) == list(range(100))
    assert parts == split_pool(range(100), (0.8, 0.1, 0.1), seed=3) != split_pool(range(100), (0.8, 0.1, 0.1), 4)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_name_pools_are_disjoint(lang):
    pools = name_pools(lang, seed=0)
    for etype in ("PER", "LOC", "ORG"):
        train, val, test = (set(pools[s][etype]) for s in ("train", "val", "test"))
        assert train and val and test and not (train & test) and not (train & val) and not (val & test)
    if lang == "en":  # split by component: no test surname / organisation stem occurs in training
        assert not {n.split()[-1] for n in pools["test"]["PER"]} & {n.split()[-1] for n in pools["train"]["PER"]}
        stem = lambda n: n.rsplit(" ", 1)[0]  # noqa: E731
        assert not {stem(n) for n in pools["test"]["ORG"]} & {stem(n) for n in pools["train"]["ORG"]}


# ------------------------------------------------------------------------------------------- generated sets
@pytest.mark.parametrize("build", [build_ner, build_qa, build_relation])
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_generated_sets_are_deterministic_and_sized(build, lang):
    a = build(40, 10, 12, lang=lang, seed=1)
    assert a == build(40, 10, 12, lang=lang, seed=1)
    assert a != build(40, 10, 12, lang=lang, seed=2)
    assert [len(a[s]) for s in ("train", "val", "test")] == [40, 10, 12]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_ner_tags_offsets_and_name_disjointness(lang):
    splits = build_ner(300, 50, 100, lang=lang, seed=0)
    names = {}
    for split, rows in splits.items():
        names[split] = set()
        for r in rows:
            check_bio(r["tags"])
            assert len(r["tokens"]) == len(r["tags"])
            if lang == "zh":
                assert "".join(r["tokens"]) == r["text"]
            for e in r["entities"]:
                assert r["text"][e["start"] : e["end"]] == e["text"]
                names[split].add(e["text"])
            # the tags spell out exactly the entities
            n_begin = sum(t.startswith("B-") for t in r["tags"])
            assert n_begin == len(r["entities"])
    assert names["train"] and names["test"] and not names["train"] & names["test"]


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_qa_answers_slice_out_of_the_context(lang):
    splits = build_qa(200, 20, 50, lang=lang, seed=0)
    people = {}
    for split, rows in splits.items():
        assert len({r["id"] for r in rows}) == len(rows)
        for r in rows:
            check_squad(r)
            (answer,), (start,) = r["answers"]["text"], r["answers"]["answer_start"]
            assert r["context"][start : start + len(answer)] == answer and answer not in r["question"]
        people[split] = {q for r in rows for q in re.findall(r"[A-Z][a-z]+ [A-Z][a-z]+", r["context"])}
    if lang == "en":
        assert not people["train"] & people["test"]


def test_check_squad_rejects_a_wrong_offset():
    rec = {
        "id": "x",
        "context": "Ann lives in Oslo.",
        "question": "?",
        "answers": {"text": ["Oslo"], "answer_start": [13]},
    }
    check_squad(rec)
    rec["answers"]["answer_start"] = [12]
    with pytest.raises(ValueError, match="not at 12"):
        check_squad(rec)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_relation_spans_and_labels(lang):
    splits = build_relation(400, 40, 80, lang=lang, seed=0)
    assert {r["label"] for r in splits["train"]} == set(RELATION_LABELS)
    heads = {}
    for split, rows in splits.items():
        for r in rows:
            check_relation(r)
        heads[split] = {r["text"][slice(*r["head"])] for r in rows}
    assert not heads["train"] & heads["test"]
    with pytest.raises(ValueError):
        check_relation({"text": "abc", "head": [0, 2], "tail": [1, 3], "label": "born_in"})


# ------------------------------------------------------------------------------------------- docstrings
def test_summary_line_takes_the_first_sentence_of_the_first_paragraph():
    assert summary_line("Return the sum.  More detail here.\n\nArgs: x") == "Return the sum."
    assert summary_line("\n    Split a path\n    into parts.\n\n    Details.\n") == "Split a path into parts."


def test_docstrings_on_a_small_library(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text(
        textwrap.dedent('''
        def add(a, b):
            """Add two numbers together. Extra."""
            return a + b

        def only_doc():
            """Nothing but a docstring here."""
    ''')
    )
    (tmp_path / "util.py").write_text(
        textwrap.dedent('''
        class Box:
            @property
            def size(self):
                """
                The size of this box.
                """
                return 3
    ''')
    )
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "t.py").write_text('def f():\n    """Skipped test helper here."""\n    return 1\n')
    rows = [r for s in build_docstrings(seed=0, root=tmp_path, held_out_fraction=0.3).values() for r in s]
    got = {(r["module"], r["name"], r["target"]): r["source"] for r in rows}
    assert got == {
        ("pkg", "add", "Add two numbers together."): "def add(a, b):\n    return a + b",
        ("util", "size", "The size of this box."): "@property\ndef size(self):\n    return 3",
    }


def test_stdlib_docstrings_split_by_module_without_docstrings_in_sources():
    splits = build_docstrings(seed=0)
    modules = {s: {r["module"] for r in rows} for s, rows in splits.items()}
    assert not modules["train"] & modules["test"] and not modules["train"] & modules["val"]
    assert not modules["val"] & modules["test"]
    n = sum(len(v) for v in splits.values())
    assert n > 3000 and 0.05 < len(splits["test"]) / n < 0.2
    biggest = max(Counter(r["module"] for r in splits["test"]).values())
    assert len(modules["test"]) >= 10 and biggest <= 0.15 * 0.1 * n  # many held-out modules, none dominant
    targets = [r["target"] for rows in splits.values() for r in rows]
    assert len({t.lower() for t in targets}) == len(targets)  # each target once: none shared between splits
    for r in splits["test"][:300]:
        if len(r["source"]) < 1000:
            func = ast.parse(r["source"]).body[0]
            assert isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)) and func.name == r["name"]
            assert ast.get_docstring(func) is None
    assert build_docstrings(50, 5, 5, seed=0) == build_docstrings(50, 5, 5, seed=0)
    assert build_docstrings(50, 5, 5, seed=1)["test"] != build_docstrings(50, 5, 5, seed=0)["test"]


# ------------------------------------------------------------------------------------------- cedict, sentiment
@pytest.mark.parametrize(
    ("sense", "cleaned"),
    [("to eat", "to eat"), ("variant of 吃[chi1]", None), ("CL:個|个[ge4]", None), ("surname Wang", None),
     ("apple (fruit)", "apple"), ("Byron (1788-1824), English poet", "Byron, English poet"), ("(slang) cool", None),
     ("a very long sense that has far too many words in it", None)],
)  # fmt: skip
def test_clean_sense(sense, cleaned):
    assert clean_sense(sense, max_words=6) == cleaned


def test_cedict_pairs_are_short_disjoint_and_seeded():
    splits = build_cedict(seed=0)
    sources = {s: [r["source"] for r in rows] for s, rows in splits.items()}
    assert len(splits["train"]) > 50_000 and len(splits["test"]) > 1000
    assert not set(sources["train"]) & set(sources["test"]) and not set(sources["val"]) & set(sources["test"])
    assert all(re.fullmatch(r"[\u4e00-\u9fff]{1,4}", s) for rows in sources.values() for s in rows)
    assert all("(" not in r["target"] and r["target"] for r in splits["test"])
    assert {r["source"]: r["target"] for r in splits["train"]}.get("苹果") in (None, "apple")
    assert build_cedict(10, 10, 10, seed=0) == build_cedict(10, 10, 10, seed=0) != build_cedict(10, 10, 10, seed=1)


def test_sentiment_keeps_the_peft_splits_and_adds_a_disjoint_val():
    from llmlab.data.sentiment import build_sentiment_task

    splits = build_sentiment(100, 40, 60, lang="zh", seed=0)
    train, test = build_sentiment_task("zh", 100, 60, 0)
    assert splits["train"] == [{"text": e.text, "label": e.label} for e in train]
    assert splits["test"] == [{"text": e.text, "label": e.label} for e in test]
    val = {r["text"] for r in splits["val"]}
    assert len(val) == 40 and not val & {e.text for e in (*train, *test)}
    assert sum(r["label"] == "positive" for r in splits["val"]) == 20
    with pytest.raises(ValueError, match="even"):
        build_sentiment(100, 3, 60, lang="zh")


@pytest.mark.parametrize("build", [build_ner, build_qa, build_relation, build_sentiment])
def test_bad_language_and_sizes_are_one_line_errors(build):
    with pytest.raises(ValueError, match="lang must be one of"):
        build(lang="fr")
    with pytest.raises(ValueError, match="non-negative"):
        build(-1, lang="zh")
