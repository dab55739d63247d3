"""Parsing model replies for the structured tasks: hand-written good and bad replies."""

from __future__ import annotations

import pytest

from llmlab.apps import OutputParseError, extract_json, get_template, parse_output
from llmlab.apps.parse import RAW_SHOWN, decoding_schema

NER = get_template("ner")
RELATION = get_template("relation")


@pytest.mark.parametrize(
    "raw",
    [
        '{"PER": ["Ada Lovelace"], "LOC": ["London"], "ORG": []}',
        'Sure! Here it is: {"PER": ["Ada Lovelace"], "LOC": ["London"]} hope this helps',
        '```json\n{"PER": "Ada Lovelace", "LOC": ["London", "London"], "ORG": []}\n```',
    ],
)
def test_ner_replies_that_parse(raw: str) -> None:
    assert parse_output(NER, raw) == {"PER": ["Ada Lovelace"], "LOC": ["London"], "ORG": []}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("The entities are Ada and London.", "the model's reply is not JSON"),
        ('{"PER": ["Ada"', "the model's reply is not JSON"),
        ('["Ada", "London"]', "expected a JSON object with keys PER/LOC/ORG"),
        ('{"PERSON": ["Ada"]}', "unknown entity type 'PERSON'"),
        ('{"PER": [1, 2]}', "PER must be a list of strings"),
    ],
)
def test_ner_replies_that_do_not_parse(raw: str, reason: str) -> None:
    with pytest.raises(OutputParseError) as info:
        parse_output(NER, raw)
    message = str(info.value)
    assert message.startswith(f"ner: {reason}")
    assert "raw output: " in message and "\n" not in message
    assert isinstance(info.value, ValueError)


def test_long_raw_output_is_truncated_in_the_error() -> None:
    raw = "no json here " * 50
    with pytest.raises(OutputParseError) as info:
        parse_output(NER, raw)
    shown = str(info.value).split("raw output: ")[1]
    assert shown.endswith('..."') and len(shown) <= RAW_SHOWN + 6
    assert info.value.raw == raw  # the whole reply stays available


def test_relation_triples() -> None:
    triple = '{"head": "Ada", "relation": "works_for", "tail": "Acme"}'
    raw = f"JSON: [{triple}, {triple}]"
    assert parse_output(RELATION, raw, ("works_for",)) == [{"head": "Ada", "relation": "works_for", "tail": "Acme"}]
    single = '{"head": "Ada", "relation": "born_in", "tail": "London"}'
    assert parse_output(RELATION, single) == [{"head": "Ada", "relation": "born_in", "tail": "London"}]
    assert parse_output(RELATION, "[]") == []
    with pytest.raises(OutputParseError, match="relation: item 0: relation 'likes' is not one of works_for"):
        parse_output(RELATION, '[{"head": "Ada", "relation": "likes", "tail": "tea"}]', ("works_for",))
    with pytest.raises(OutputParseError, match='item 0 is not an object with exactly "head", "relation", "tail"'):
        parse_output(RELATION, '[{"head": "Ada", "tail": "tea"}]')
    with pytest.raises(OutputParseError, match="item 1: head, relation and tail must be non-empty strings"):
        parse_output(
            RELATION, '[{"head": "a", "relation": "r", "tail": "b"}, {"head": "", "relation": "r", "tail": "b"}]'
        )


@pytest.mark.parametrize(
    ("raw", "label"),
    [("positive", "positive"), ("Negative.", "negative"), ('"positive"', "positive"),
     ('{"label": "negative"}', "negative"), ("Label: positive\nbecause it is nice", "positive"),
     ("  POSITIVE!", "positive")],
)  # fmt: skip
def test_label_replies_that_parse(raw: str, label: str) -> None:
    assert parse_output(get_template("classify"), raw, ("positive", "negative")) == {"label": label}


@pytest.mark.parametrize("raw", ["neutral", "positive or negative", "", "I think it is positive"])
def test_label_replies_that_do_not_parse(raw: str) -> None:
    with pytest.raises(OutputParseError, match=r"^intent: the reply is not one of the labels a, b; raw output: "):
        parse_output(get_template("intent"), raw, ("a", "b"))


def test_zh_labels_and_text_tasks() -> None:
    assert parse_output(get_template("classify"), "正面。", ("正面", "负面")) == {"label": "正面"}
    assert parse_output(get_template("summarize"), "  A summary.\n") == "A summary."


def test_extract_json() -> None:
    assert extract_json('text [1, 2] more {"a": 1}') == [1, 2]
    assert extract_json('```\n{"a": [1]}\n```') == {"a": [1]}
    with pytest.raises(ValueError):
        extract_json("nothing")


def test_decoding_schemas() -> None:
    assert decoding_schema(get_template("classify"), ("x", "y")) == {"type": "string", "enum": ["x", "y"]}
    schema = decoding_schema(RELATION, ("born_in",))
    assert schema["items"]["properties"]["relation"] == {"type": "string", "enum": ["born_in"]}
    assert RELATION.schema["items"]["properties"]["relation"] == {"type": "string"}  # the template is not changed
    assert decoding_schema(NER)["required"] == ["PER", "LOC", "ORG"]
    with pytest.raises(ValueError, match="writes free text"):
        decoding_schema(get_template("story"))


def test_extracted_names_the_text_does_not_contain_are_dropped() -> None:
    """NER names and relation triples are spans of the input: what the text lacks (a name copied from the
    prompt's examples, a misspelling) leaves the result and is listed in `not_in_text`."""
    from llmlab.apps.parse import ground
    from llmlab.apps.render import prepare_input
    from llmlab.apps.run import run_task
    from llmlab.config.sampling import SamplingConfig

    text = "Angela Merkel visited Siemens in Munich."
    ner = {"PER": ["Angela Merkel"], "LOC": ["munich", "Sonderschwolm"], "ORG": ["United Nations"]}
    kept, dropped = ground("ner", ner, text)
    assert kept == {"PER": ["Angela Merkel"], "LOC": ["munich"], "ORG": []}
    assert dropped == ["Sonderschwolm", "United Nations"]
    triples = [{"head": "Merkel", "relation": "visited", "tail": "Siemens"},
               {"head": "Merkel", "relation": "located_in", "tail": "Berlin"}]  # fmt: skip
    assert ground("relation", triples, text) == (triples[:1], ["Merkel -> Berlin"])
    assert ground("classify", {"label": "x"}, text) == ({"label": "x"}, [])

    reply = '{"PER": ["Angela Merkel"], "LOC": ["Munich"], "ORG": ["SEMERKLEM"]}'
    app_input = prepare_input(get_template("ner"), {"text": text}, lang=None, labels=None)
    result = run_task(get_template("ner"), app_input, lambda *_: reply, SamplingConfig(temperature=0.0))
    assert result.result == {"PER": ["Angela Merkel"], "LOC": ["Munich"], "ORG": []}
    assert result.to_json()["not_in_text"] == ["SEMERKLEM"]
