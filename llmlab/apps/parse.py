"""Parse a model's reply for a structured task and check it against the task's output schema.

    parse_output(get_template("ner"), '{"PER": ["Ada"], "LOC": [], "ORG": []}')
    # {"PER": ["Ada"], "LOC": [], "ORG": []}
    parse_output(get_template("classify"), "Positive.", labels=("positive", "negative"))
    # {"label": "positive"}

A reply that does not parse raises `OutputParseError` (a ValueError), one line naming the task, what was wrong and
the start of the raw reply, e.g. `ner: the model's reply is not JSON (Expecting value at char 0); raw output:
"Sure! The entities are..."`. Parsing is lenient only where the meaning is unambiguous: a ```json fence or text
around the JSON document, a missing entity-type key (= none of that type), a single string where a list was
expected, a label in another case or followed by punctuation. Everything else (an unknown entity type, a relation
outside the given types, a label not in the set) is an error, never a guess.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from llmlab.apps.templates import AppTemplate

RAW_SHOWN = 120  # characters of the raw reply quoted in an error
MAX_NAME_CHARS = 40  # constrained decoding: the longest entity name / triple part
MAX_ITEMS = 8  # constrained decoding: the most names per entity type / triples
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)(?:```|$)", re.DOTALL)
_LABEL_TRIM = " \t\r\n\"'`.,;:!?。，；：！？“”‘’「」"
ENTITY_KEYS = ("PER", "LOC", "ORG")
TRIPLE_KEYS = ("head", "relation", "tail")


class OutputParseError(ValueError):
    """The model's reply does not parse or does not fit the task's schema (one line, raw reply quoted)."""

    def __init__(self, task: str, reason: str, raw: str) -> None:
        shown = raw if len(raw) <= RAW_SHOWN else raw[:RAW_SHOWN] + "..."
        super().__init__(f"{task}: {reason}; raw output: {json.dumps(shown, ensure_ascii=False)}")
        self.task, self.reason, self.raw = task, reason, raw


def extract_json(raw: str) -> Any:
    """The first JSON document in `raw` (inside a ``` fence if there is one); ValueError when there is none."""
    fenced = _FENCE.search(raw)
    text = (fenced.group(1) if fenced else raw).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError as whole_error:
        starts = [i for i in (text.find("{"), text.find("[")) if i >= 0]
        if not starts:
            raise ValueError(f"{whole_error.msg} at char {whole_error.pos}") from None
        try:
            value, _ = json.JSONDecoder().raw_decode(text, min(starts))
        except json.JSONDecodeError as error:
            raise ValueError(f"{error.msg} at char {error.pos}") from None
        return value


def _strings(value: Any) -> list[str] | None:
    """A list of strings (a lone string becomes a one-item list); None for anything else."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [item.strip() for item in value if item.strip()]
    return None


def parse_entities(task: str, raw: str, value: Any) -> dict[str, list[str]]:
    """Check an NER reply: an object with keys among PER/LOC/ORG, each a list of strings (missing key = [])."""
    if not isinstance(value, dict):
        raise OutputParseError(task, f"expected a JSON object with keys {'/'.join(ENTITY_KEYS)}", raw)
    unknown = [key for key in value if key not in ENTITY_KEYS]
    if unknown:
        raise OutputParseError(task, f"unknown entity type {unknown[0]!r} (expected {'/'.join(ENTITY_KEYS)})", raw)
    result: dict[str, list[str]] = {}
    for key in ENTITY_KEYS:
        names = _strings(value.get(key, []))
        if names is None:
            raise OutputParseError(task, f"{key} must be a list of strings", raw)
        result[key] = list(dict.fromkeys(names))
    return result


def parse_triples(task: str, raw: str, value: Any, relations: Sequence[str] = ()) -> list[dict[str, str]]:
    """Check a relation reply: a list of {"head", "relation", "tail"} strings (a lone object counts as one)."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise OutputParseError(task, 'expected a JSON list of {"head", "relation", "tail"} objects', raw)
    triples = []
    for i, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != set(TRIPLE_KEYS):
            raise OutputParseError(task, f'item {i} is not an object with exactly "head", "relation", "tail"', raw)
        if not all(isinstance(item[key], str) and item[key].strip() for key in TRIPLE_KEYS):
            raise OutputParseError(task, f"item {i}: head, relation and tail must be non-empty strings", raw)
        triple = {key: item[key].strip() for key in TRIPLE_KEYS}
        if relations and triple["relation"] not in relations:
            raise OutputParseError(
                task, f"item {i}: relation {triple['relation']!r} is not one of {', '.join(relations)}", raw
            )
        if triple not in triples:
            triples.append(triple)
    return triples


def parse_label(task: str, raw: str, labels: Sequence[str]) -> dict[str, str]:
    """The label of a classification reply: the first line (or a {"label": ...} object / a JSON string), matched
    to one of `labels` ignoring case and surrounding punctuation."""
    text = raw.strip()
    if text.startswith(("{", '"')):
        try:
            value = json.loads(text)
            text = value.get("label", "") if isinstance(value, dict) else value
        except (json.JSONDecodeError, AttributeError):
            pass
    if not isinstance(text, str):
        raise OutputParseError(task, f"expected one of the labels {', '.join(labels)}", raw)
    first = text.strip().split("\n")[0].strip(_LABEL_TRIM)
    for prefix in ("label:", "intent:", "标签：", "意图：", "标签:", "意图:"):
        if first.lower().startswith(prefix):
            first = first[len(prefix) :].strip(_LABEL_TRIM)
    by_key = {label.casefold(): label for label in labels}
    if first.casefold() in by_key:
        return {"label": by_key[first.casefold()]}
    raise OutputParseError(task, f"the reply is not one of the labels {', '.join(labels)}", raw)


def _in_text(name: str, text: str) -> bool:
    return name in text or name.casefold() in text.casefold()


def ground(task: str, result: Any, text: str) -> tuple[Any, list[str]]:
    """Keep only what the input text contains: NER names, relation triples whose head and tail both occur.

    A small chat model often "finds" names that are not in the text (copied from the prompt's worked examples,
    or misspelt); extraction means spans of the input, so those are dropped. Returns (the kept result, the
    dropped names or "head -> tail" pairs); other tasks come back unchanged.
    """
    if task == "ner":
        kept = {key: [n for n in names if _in_text(n, text)] for key, names in result.items()}
        return kept, [n for key, names in result.items() for n in names if n not in kept[key]]
    if task == "relation":
        triples = [t for t in result if _in_text(t["head"], text) and _in_text(t["tail"], text)]
        return triples, [f"{t['head']} -> {t['tail']}" for t in result if t not in triples]
    return result, []


def parse_output(template: AppTemplate, raw: str, labels: Sequence[str] = ()) -> Any:
    """The parsed, schema-checked result of a structured task (OutputParseError otherwise); text tasks: the text."""
    if template.output == "text":
        return raw.strip()
    if template.output == "label":
        return parse_label(template.name, raw, labels)
    try:
        value = extract_json(raw)
    except ValueError as error:
        raise OutputParseError(template.name, f"the model's reply is not JSON ({error})", raw) from None
    if template.name == "ner":
        return parse_entities(template.name, raw, value)
    if template.name == "relation":
        return parse_triples(template.name, raw, value, labels)
    return value


def decoding_schema(template: AppTemplate, labels: Sequence[str] = ()) -> dict[str, Any]:
    """The JSON Schema a reply must match, for constrained decoding: the template's schema, with the label set
    as an enum (a label task's reply is then a JSON string such as `"positive"`, which `parse_label` accepts).

    Raises:
        ValueError: for a free-text task (nothing to constrain).
    """
    if template.output == "label":
        return {"type": "string", "enum": list(labels)}
    if template.schema is None:
        raise ValueError(f"app task {template.name!r} writes free text; there is no JSON Schema to constrain it with")
    schema = _bounded(json.loads(json.dumps(template.schema)))  # a bounded deep copy
    if template.name == "relation" and labels:
        schema["items"]["properties"]["relation"] = {"type": "string", "enum": list(labels)}
    return schema


def _bounded(schema: Any) -> Any:
    """`schema` with every string at most `MAX_NAME_CHARS` long and every list at most `MAX_ITEMS` long, so a
    constrained reply is a complete document within a known number of tokens (a small model would otherwise
    fill an open string until --max-new-tokens)."""
    if isinstance(schema, dict):
        schema = {key: _bounded(value) for key, value in schema.items()}
        if schema.get("type") == "string" and "enum" not in schema:
            schema.update(minLength=1, maxLength=MAX_NAME_CHARS)
        if schema.get("type") == "array":
            schema["maxItems"] = MAX_ITEMS
    return schema
