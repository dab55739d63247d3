"""Entity names <-> BIO tags (how the NER app is scored like a tagger)."""

from __future__ import annotations

import pytest

from llmlab.apps import bio_tags, entities_from_tags, find_spans, joiner_for


def test_names_become_bio_tags_over_english_tokens() -> None:
    tokens = ["Ada", "Lovelace", "met", "Babbage", "in", "London", "and", "Ada", "Lovelace", "smiled", "."]
    entities = {"PER": ["Ada Lovelace", "Babbage"], "LOC": ["London"], "ORG": []}
    assert bio_tags(tokens, entities) == [
        "B-PER", "I-PER", "O", "B-PER", "O", "B-LOC", "O", "B-PER", "I-PER", "O", "O",
    ]  # fmt: skip
    assert entities_from_tags(tokens, bio_tags(tokens, entities)) == entities


def test_chinese_characters_and_longest_name_first() -> None:
    tokens = list("北京大学在北京。")
    tags = bio_tags(tokens, {"LOC": ["北京"], "ORG": ["北京大学"]}, joiner="")
    assert tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "O"]
    assert entities_from_tags(tokens, tags, joiner="") == {"PER": [], "LOC": ["北京"], "ORG": ["北京大学"]}


def test_names_not_in_the_text_and_partial_tokens() -> None:
    assert bio_tags(["Ada", "is", "here"], {"PER": ["Bob", ""]}) == ["O", "O", "O"]
    assert bio_tags(["Adams", "ran"], {"PER": ["Adam"]}) == ["B-PER", "O"]  # a name covers the tokens it overlaps
    assert find_spans("a b a", {"X": ["a"]}) == [(0, 1, "X"), (4, 5, "X")]


def test_tags_to_entities_reads_like_seqeval() -> None:
    tokens = ["x", "y", "z", "w"]
    assert entities_from_tags(tokens, ["I-PER", "I-PER", "B-LOC", "I-ORG"]) == {
        "PER": ["x y"], "LOC": ["z"], "ORG": ["w"],
    }  # fmt: skip
    with pytest.raises(ValueError, match="4 tokens but 3 tags"):
        entities_from_tags(tokens, ["O"] * 3)


def test_joiner_for() -> None:
    assert joiner_for(["北", "京"]) == "" and joiner_for(["New", "York"]) == " "
