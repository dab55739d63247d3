"""Shared pieces of the labelled-set builders: seeded splitting, tokenisation into BIO tags, and the checks that
every record is consistent (an answer offset that slices to its answer, BIO tags that open before they continue,
relation spans that cut out their entities)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any

Splits = dict[str, list[dict[str, Any]]]
SPLITS = ("train", "val", "test")
ENTITY_TYPES = ("PER", "LOC", "ORG")
LANGS = ("zh", "en")

# English word tokens: words (with inner hyphens/apostrophes), numbers, single punctuation marks.
_EN_TOKEN = re.compile(r"\w+(?:[-'’]\w+)*|[^\w\s]")


def check_lang(lang: str) -> str:
    """`lang` if it is "zh" or "en"; else a one-line ValueError."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return lang


def check_sizes(**sizes: int | None) -> None:
    """Every given size is a non-negative int; one-line ValueError naming the first that is not."""
    for name, value in sizes.items():
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def split_pool(items: Sequence[Any], fractions: Sequence[float], seed: int) -> list[list[Any]]:
    """Shuffle a copy of `items` with `seed` and cut it into len(fractions) disjoint parts (the last part takes
    the rest). `items` should be in a deterministic order (sorted) so the result depends only on `seed`."""
    pool = list(items)
    random.Random(seed).shuffle(pool)
    parts, start = [], 0
    for i, frac in enumerate(fractions):
        end = len(pool) if i == len(fractions) - 1 else start + round(frac * len(pool))
        parts.append(pool[start:end])
        start = end
    return parts


def tokenize_with_offsets(text: str, lang: str) -> list[tuple[str, int, int]]:
    """(token, start, end) character spans: one token per non-space character for zh, regex words and
    punctuation marks for en."""
    if lang == "zh":
        return [(ch, i, i + 1) for i, ch in enumerate(text) if not ch.isspace()]
    return [(m.group(), m.start(), m.end()) for m in _EN_TOKEN.finditer(text)]


def bio_record(text: str, entities: list[dict[str, Any]], lang: str) -> dict[str, Any]:
    """A token-classification record from `text` and its entity spans ({"type", "start", "end"}, character
    offsets, end exclusive): {"text", "tokens", "tags", "entities"} with B-/I-/O tags.

    Raises:
        ValueError: an entity does not start and end on token boundaries (a template bug).
    """
    tokens = tokenize_with_offsets(text, lang)
    tags = ["O"] * len(tokens)
    starts = {s: i for i, (_, s, _) in enumerate(tokens)}
    ends = {e: i for i, (_, _, e) in enumerate(tokens)}
    for ent in entities:
        if ent["start"] not in starts or ent["end"] not in ends:
            raise ValueError(f"entity {ent} of {text!r} does not fall on token boundaries")
        first, last = starts[ent["start"]], ends[ent["end"]]
        tags[first] = f"B-{ent['type']}"
        for i in range(first + 1, last + 1):
            tags[i] = f"I-{ent['type']}"
    ents = [{"text": text[e["start"] : e["end"]], **e} for e in entities]
    return {"text": text, "tokens": [t for t, _, _ in tokens], "tags": tags, "entities": ents}


def check_bio(tags: Sequence[str]) -> None:
    """Raise ValueError when `tags` is not valid BIO (an I-X that does not follow B-X or I-X, or an unknown tag)."""
    prev = "O"
    for i, tag in enumerate(tags):
        if tag != "O" and (tag[:2] not in ("B-", "I-") or tag[2:] not in ENTITY_TYPES):
            raise ValueError(f"unknown tag {tag!r} at {i}")
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            raise ValueError(f"{tag} at {i} does not continue an entity (previous tag {prev})")
        prev = tag


def check_squad(record: dict[str, Any]) -> None:
    """Raise ValueError unless every answer_start of a SQuAD-style record slices its answer text out of the
    context."""
    answers = record["answers"]
    if len(answers["text"]) != len(answers["answer_start"]) or not answers["text"]:
        raise ValueError(f"record {record['id']}: answers need one answer_start per text")
    for text, start in zip(answers["text"], answers["answer_start"], strict=True):
        if record["context"][start : start + len(text)] != text:
            raise ValueError(f"record {record['id']}: answer {text!r} is not at {start} in the context")


def fill(template: str, values: dict[str, str]) -> tuple[str, dict[str, tuple[int, int]]]:
    """Fill the `{slot}` fields of `template` with `values`; return the text and each slot's (start, end)
    character span in it (end exclusive). Literal braces are not supported (templates never need them)."""
    out, spans, pos = [], {}, 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out.append(template[pos : m.start()])
        start = sum(map(len, out))
        value = values[m.group(1)]
        out.append(value)
        spans[m.group(1)] = (start, start + len(value))
        pos = m.end()
    out.append(template[pos:])
    return "".join(out), spans
