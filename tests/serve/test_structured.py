"""Structured output (`llmlab.serve.structured`): replies constrained by response_format always parse and validate.

Tiny random models sample freely (temperature 1, many seeds) through a character tokenizer (xgrammar's RAW
vocabulary) and a byte-level BPE one, so the mask alone makes the output valid; SmolLM2 checks a real chat
model. Validation uses a small checker for the JSON Schema keywords these schemas use (`jsonschema` is not
installed in the lab's environment).
"""

from __future__ import annotations

import inspect
import json
import string
from typing import Any

import pytest
import torch
from tiny_models import tiny_llama

from llmlab.config.sampling import SamplingConfig
from llmlab.generate import generate
from llmlab.serve.engine import Engine
from llmlab.serve.structured import build_processor, default_stop_ids
from llmlab.tokenizers.train import train_tokenizer_from_iterator

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 8},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "admin": {"type": "boolean"},
    },
    "required": ["name", "age", "admin"],
    "additionalProperties": False,
}
CHOICE = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}, "sure": {"type": "boolean"}},
    "required": ["color", "sure"],
}
LIST = {
    "type": "object",
    "properties": {
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 5}, "minItems": 1, "maxItems": 3},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["tags"],
}
NESTED = {
    "type": "object",
    "properties": {
        "point": {
            "type": "object",
            "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}, "y": {"type": "null"}},
            "required": ["x", "y"],
        },
        "kind": {"anyOf": [{"const": "a"}, {"type": "integer", "minimum": 0, "maximum": 3}]},
    },
    "required": ["point", "kind"],
}
BOUNDED_SCHEMAS = {"person": PERSON, "choice": CHOICE, "list": LIST, "nested": NESTED}
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def check(doc: Any, schema: dict[str, Any], path: str = "$") -> None:
    """Assert that `doc` is valid under `schema` (the keywords used above)."""
    if "anyOf" in schema:
        errors = []
        for option in schema["anyOf"]:
            try:
                return check(doc, option, path)
            except AssertionError as error:
                errors.append(str(error))
        raise AssertionError(f"{path}: matches no anyOf option ({errors})")
    if "const" in schema:
        assert doc == schema["const"], f"{path}: {doc!r} != const {schema['const']!r}"
    if "enum" in schema:
        assert doc in schema["enum"], f"{path}: {doc!r} not in {schema['enum']}"
    kind = schema.get("type")
    if kind == "integer":
        assert isinstance(doc, int) and not isinstance(doc, bool), f"{path}: {doc!r} is not an integer"
    elif kind == "number":
        assert isinstance(doc, (int, float)) and not isinstance(doc, bool), f"{path}: {doc!r} is not a number"
    elif kind is not None:
        assert isinstance(doc, _TYPES[kind]) and not (kind != "boolean" and isinstance(doc, bool)), (
            f"{path}: {doc!r} is not of type {kind}"
        )
    if isinstance(doc, (int, float)) and not isinstance(doc, bool):
        assert schema.get("minimum", doc) <= doc <= schema.get("maximum", doc), f"{path}: {doc} out of range"
    if isinstance(doc, str):
        assert len(doc) <= schema.get("maxLength", len(doc)), f"{path}: {doc!r} too long"
    if isinstance(doc, list):
        assert schema.get("minItems", 0) <= len(doc) <= schema.get("maxItems", len(doc)), f"{path}: item count"
        for i, item in enumerate(doc):
            check(item, schema.get("items", {}), f"{path}[{i}]")
    if isinstance(doc, dict):
        properties = schema.get("properties", {})
        missing = set(schema.get("required", [])) - set(doc)
        assert not missing, f"{path}: missing {sorted(missing)}"
        if schema.get("additionalProperties") is False:
            assert set(doc) <= set(properties), f"{path}: extra keys {sorted(set(doc) - set(properties))}"
        for key, value in doc.items():
            check(value, properties.get(key, {}), f"{path}.{key}")


def json_schema(schema: dict[str, Any], name: str = "answer") -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


@pytest.fixture(scope="module")
def char_tokenizer():
    """A character tokenizer (xgrammar RAW vocabulary) over printable ASCII."""
    return train_tokenizer_from_iterator("char", [string.printable], vocab_size=0)


@pytest.fixture(scope="module")
def bpe_tokenizer():
    """A small byte-level BPE tokenizer (xgrammar BYTE_LEVEL vocabulary) trained on JSON-ish text."""
    texts = [json.dumps({"name": "ann", "age": 31, "admin": True, "tags": ["x", "yz"], "color": c}) for c in "rgb"]
    return train_tokenizer_from_iterator("bpe", texts * 30 + [string.printable], vocab_size=320)


def generate_reply(model, tokenizer, prompt: list[int], response_format, sampling: SamplingConfig) -> list[int]:
    """The reply tokens (stop token included) of `generate` under response_format."""
    stops = default_stop_ids(tokenizer)
    processor = build_processor(tokenizer, response_format, stop_ids=stops)
    ids = torch.tensor([prompt])
    out = generate(model, ids, sampling=sampling, eos_token_id=stops, logits_processors=[processor])
    return out[0, ids.size(1) :].tolist()


def assert_valid(tokenizer, reply: list[int], schema: dict[str, Any] | None) -> Any:
    """The reply ends with a stop token and the text before it is a JSON document valid under `schema`."""
    assert reply and reply[-1] in default_stop_ids(tokenizer), f"the reply did not finish: {tokenizer.decode(reply)!r}"
    doc = json.loads(tokenizer.decode(reply[:-1]))
    if schema is None:
        assert isinstance(doc, dict)
    else:
        check(doc, schema)
    return doc


@pytest.mark.parametrize("kind", ["char", "bpe"])
@pytest.mark.parametrize("name", sorted(BOUNDED_SCHEMAS))
def test_random_tiny_model_samples_only_valid_documents(kind: str, name: str, request) -> None:
    tokenizer = request.getfixturevalue(f"{kind}_tokenizer")
    model = tiny_llama(1, vocab_size=tokenizer.vocab_size, max_position_embeddings=256)  # near-uniform logits
    schema = BOUNDED_SCHEMAS[name]
    docs = []
    for seed in range(6):
        sampling = SamplingConfig(max_new_tokens=200, temperature=1.0, seed=seed)
        docs.append(assert_valid(tokenizer, generate_reply(model, tokenizer, [1, 2, 3], json_schema(schema), sampling), schema))
    assert len({json.dumps(d, sort_keys=True) for d in docs}) > 1  # the sampler chose; the mask only constrained


def test_mask_allows_exactly_the_grammar(bpe_tokenizer) -> None:
    tokenizer = bpe_tokenizer
    processor = build_processor(tokenizer, {"type": "json_object"})
    vocab = tokenizer.vocab_size
    logits = processor(torch.tensor([[5, 6]]), torch.zeros(1, vocab + 7))  # a model head wider than the vocabulary
    allowed = torch.isfinite(logits[0]).nonzero().flatten().tolist()
    assert allowed and all(tokenizer.decode([i]).startswith("{") for i in allowed)
    assert max(allowed) < vocab
    text = '{"a": [1, true]}'
    prompt = [5, 6]
    for token in tokenizer.encode(text):
        prompt.append(token)
        logits = processor(torch.tensor([prompt]), torch.zeros(1, vocab))
    assert processor.is_complete
    assert set(torch.isfinite(logits[0]).nonzero().flatten().tolist()) == set(default_stop_ids(tokenizer))


def test_processor_refuses_misuse(char_tokenizer) -> None:
    processor = build_processor(char_tokenizer, {"type": "json_object"})
    with pytest.raises(ValueError, match="one row"):
        processor(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, char_tokenizer.vocab_size))
    processor(torch.tensor([[1, 2]]), torch.zeros(1, char_tokenizer.vocab_size))
    bad = char_tokenizer.encode("x")[0]  # not a JSON object's first character: the mask forbade it
    with pytest.raises(RuntimeError, match="breaks the response_format grammar"):
        processor(torch.tensor([[1, 2, bad]]), torch.zeros(1, char_tokenizer.vocab_size))


@pytest.mark.parametrize(
    ("response_format", "match"),
    [
        ("json", "must be an object"),
        ({"type": "yaml"}, "response_format.type must be one of"),
        ({"type": "json_schema"}, "response_format.json_schema must be an object"),
        ({"type": "json_schema", "json_schema": {"name": "x", "schema": [1]}}, "schema must be a JSON object"),
        (json_schema({"type": "nonsense"}), r'not a usable JSON Schema: Unsupported type "nonsense"'),
        (json_schema({"$ref": "#/definitions/missing"}), "not a usable JSON Schema"),
    ],
)
def test_bad_response_formats_are_one_line_value_errors(char_tokenizer, response_format, match: str) -> None:
    with pytest.raises(ValueError, match=match) as error:
        build_processor(char_tokenizer, response_format)
    assert "\n" not in str(error.value)


def test_text_format_needs_no_processor(char_tokenizer) -> None:
    assert build_processor(char_tokenizer, {"type": "text"}) is None


def test_wordpiece_tokenizers_are_refused() -> None:
    tokenizer = train_tokenizer_from_iterator("wordpiece", ["a b c {} [] : , \" 1 2"] * 5, vocab_size=60)
    with pytest.raises(ValueError, match="WordPiece"):
        build_processor(tokenizer, {"type": "json_object"})


def engine_takes_processors() -> bool:
    return "processors" in inspect.signature(Engine.submit).parameters


@pytest.mark.skipif(not engine_takes_processors(), reason="Engine.submit has no processors= yet (api helper)")
def test_engine_batch_mixes_constrained_and_free_requests(bpe_tokenizer) -> None:
    tokenizer = bpe_tokenizer
    model = tiny_llama(2, vocab_size=tokenizer.vocab_size, max_position_embeddings=256)
    engine = Engine(model, tokenizer, max_batch=4)
    stops = default_stop_ids(tokenizer)
    expected: dict[int, dict[str, Any] | None] = {}
    for seed, (name, schema) in enumerate([*BOUNDED_SCHEMAS.items(), *BOUNDED_SCHEMAS.items()]):
        processor = build_processor(tokenizer, json_schema(schema, name), stop_ids=stops)
        sampling = SamplingConfig(max_new_tokens=200, temperature=1.0, seed=seed)
        expected[engine.submit([1, 2, 3 + seed], sampling, eos_ids=stops, processors=[processor])] = schema
    free = engine.submit([4, 5], SamplingConfig(max_new_tokens=20, temperature=1.0, seed=9), eos_ids=stops)
    outputs = engine.run_until_done()
    for request_id, schema in expected.items():
        assert_valid(tokenizer, outputs[request_id], schema)
    assert 1 <= len(outputs[free]) <= 20


# --------------------------------------------------------------------------------------------- SmolLM2
SMOL_CASES = [
    ("Give me a person as JSON with name, age and whether they are an admin.", PERSON),
    ("Pick a color and say whether you are sure.", CHOICE),
    ("Tag this sentence: the cat sat on the mat.", LIST),
    ("Describe the point (3, none) and a kind.", NESTED),
    ("What is 2 + 2? Answer with a JSON object with the key answer.", None),
]


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_smollm2_replies_parse_and_validate(smollm2, temperature: float) -> None:
    from llmlab.tokenizers.chat import render_prompt

    model, tokenizer = smollm2
    for i, (question, schema) in enumerate(SMOL_CASES):
        prompt = render_prompt(tokenizer, "chatml", None, [{"role": "user", "content": question}])
        response_format = {"type": "json_object"} if schema is None else json_schema(schema)
        sampling = SamplingConfig(max_new_tokens=96, temperature=temperature, seed=i)
        reply = generate_reply(model, tokenizer, prompt, response_format, sampling)
        assert_valid(tokenizer, reply, schema)
