"""The template registry and rendering: every task in both languages, language detection, input checks."""

from __future__ import annotations

import pytest

from llmlab.apps import detect_lang, get_template, parse_labels, prepare_input, render_messages, task_list, task_names
from llmlab.apps.templates import LANGS

TASKS = (
    "summarize", "classify", "intent", "ner", "relation", "qa",
    "rewrite", "story", "copywriting", "code-generate", "code-explain",
)  # fmt: skip
STRUCTURED = {"classify", "intent", "ner", "relation"}


def test_registry_has_every_task_with_both_languages() -> None:
    assert task_names() == list(TASKS)
    assert [name for name, _ in task_list()] == list(TASKS)
    for name in TASKS:
        template = get_template(name)
        assert template.description and "\n" not in template.description
        assert set(template.prompts) == set(LANGS)
        assert template.structured == (name in STRUCTURED)
        if template.structured:
            assert template.sampling.temperature == 0.0, f"{name} must decode greedily"
            assert template.schema is not None


def test_unknown_task_names_the_choices() -> None:
    with pytest.raises(ValueError, match="unknown app task 'nerr'; choose one of summarize, classify") as info:
        get_template("nerr")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "lang"),
    [("Hello world", "en"), ("你好，世界", "zh"), ("我用 Python 写代码", "zh"), ("def f(): pass", "en"), ("", "en")],
)
def test_language_detection(text: str, lang: str) -> None:
    assert detect_lang(text) == lang


@pytest.mark.parametrize("name", TASKS)
@pytest.mark.parametrize("lang", LANGS)
def test_every_template_renders_in_both_languages(name: str, lang: str) -> None:
    template = get_template(name)
    fields = {"text": "输入{文本}" if lang == "zh" else "input {text} with braces", "question": "Who?"}
    labels = ("a", "b") if template.labels == "required" else None
    app_input = prepare_input(template, fields, labels=labels, lang=lang)
    messages = render_messages(template, app_input)
    prompt = template.prompt(lang)
    assert messages[0] == {"role": "system", "content": prompt.system}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * len(prompt.examples) + ["user"]
    assert fields["text"] in messages[-1]["content"]  # braces in the input are kept, not formatted
    for example, answer in zip(prompt.examples, messages[2::2], strict=False):
        assert answer["content"] == example.answer


def test_rendering_fills_labels_question_and_style() -> None:
    qa = prepare_input(get_template("qa"), {"text": "长城位于中国北方。", "question": "长城在哪里？"})
    assert qa.lang == "zh"
    last = render_messages(get_template("qa"), qa)[-1]["content"]
    assert last == "短文：长城位于中国北方。\n问题：长城在哪里？\n答案："
    classify = prepare_input(get_template("classify"), {"text": "great"}, labels=parse_labels("pos, neg,pos"))
    assert classify.labels == ("pos", "neg")
    assert render_messages(get_template("classify"), classify)[-1]["content"] == "Labels: pos, neg\nText: great\nLabel:"
    intent = prepare_input(get_template("intent"), {"text": "hi there"})
    assert "book_flight" in intent.values["labels"]  # the default intent set
    rewrite = prepare_input(get_template("rewrite"), {"text": "明天去不了"})
    assert "正式" in render_messages(get_template("rewrite"), rewrite)[-1]["content"]  # the zh default style
    casual = prepare_input(get_template("rewrite"), {"text": "I shall attend.", "style": "casual"})
    assert "casual style" in render_messages(get_template("rewrite"), casual)[-1]["content"]


@pytest.mark.parametrize(
    ("task", "fields", "kwargs", "message"),
    [
        ("summarize", {"text": "  "}, {}, "has no text for app task 'summarize'"),
        ("qa", {"text": "A passage."}, {}, "app task 'qa' needs a question"),
        ("classify", {"text": "x"}, {}, "needs the labels to choose from: add --labels"),
        ("classify", {"text": "x"}, {"labels": ("only",)}, "at least two labels"),
        ("summarize", {"text": "x"}, {"labels": ("a", "b")}, "takes no --labels"),
        ("ner", {"text": "x"}, {"lang": "fr"}, "unknown language 'fr'; use --lang en or --lang zh"),
    ],
)
def test_bad_inputs_are_one_line_errors(task: str, fields: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        prepare_input(get_template(task), fields, **kwargs)
    assert "\n" not in str(info.value)


def test_parse_labels() -> None:
    assert parse_labels(None) is None
    assert parse_labels(" a ,b,, a") == ("a", "b")
    with pytest.raises(ValueError, match="--labels is empty"):
        parse_labels(" , ")
