"""Structured output: OpenAI's `response_format` enforced at decode time with a token mask from xgrammar.

    processor = build_processor(tokenizer, {"type": "json_schema", "json_schema": {"name": "p", "schema": {...}}},
                                stop_ids=eos_ids)
    engine.submit(prompt_ids, sampling, eos_ids=eos_ids, processors=[processor])   # one processor per request

Every step the processor asks a grammar matcher which tokens may come next (a bitmask over the vocabulary)
and sets every other logit to -inf, so whatever the sampler picks keeps the reply a prefix of a document the
grammar accepts; once the document is complete only the stop tokens are allowed. The reply therefore always
parses and validates when it ends with "stop"; a reply cut by `max_tokens` ("length") is a valid prefix only.

Contract with the decoding loop (`llmlab.serve.engine.Engine`, `llmlab.generate.stream_generate`):
    - one processor per request (it is stateful), called once per decoding step, in order, on ONE row:
      `processor(input_ids (1, T), logits (1, V)) -> logits (1, V)` (masked in place and returned);
    - its first call sees exactly the prompt (T = prompt length, remembered then); every later call sees
      the same row grown by the tokens sampled since the previous call, which it feeds to the matcher;
    - it must run BEFORE temperature/top-k/top-p/min-p (the loops' `extra` / `logits_processors` slot), so the
      filters choose among grammatical tokens (after a top-k, the mask could remove every kept token);
    - `stop_ids` must be the request's `eos_ids`: the grammar ends the reply with one of them.

Technique: grammar-constrained decoding with a pushdown automaton over the tokenizer's vocabulary, XGrammar
(Dong et al., 2024, https://arxiv.org/abs/2411.15100). Library: https://github.com/mlc-ai/xgrammar.
"""

from __future__ import annotations

import json
import re
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import xgrammar

from llmlab.tokenizers.chat import KNOWN_END_MARKERS

_XGRAMMAR_LOG_PREFIX = re.compile(r"^\[[^\]]*\]\s*\S+:\d+:\s*")  # "[00:13:22] /project/x.cc:5082: "

RESPONSE_FORMAT_TYPES = ("text", "json_object", "json_schema")
"""The `response_format.type` values OpenAI's chat API defines."""

# One compiler (tokenizer info + grammar cache) per tokenizer object: the vocabulary is decoded once.
_COMPILERS: weakref.WeakKeyDictionary[Any, xgrammar.GrammarCompiler] = weakref.WeakKeyDictionary()


def _vocab_type(backend_json: Mapping[str, Any]) -> tuple[xgrammar.VocabType, bool]:
    """(xgrammar vocabulary type, add_prefix_space) from a `tokenizers` tokenizer.json dict; ValueError for
    vocabularies whose token strings are not plain text pieces (WordPiece's `##` continuations)."""
    model_type = backend_json.get("model", {}).get("type")
    decoder = backend_json.get("decoder") or {}
    decoders = decoder.get("decoders", [decoder]) if decoder.get("type") == "Sequence" else [decoder]
    decoder_types = {d.get("type") for d in decoders if d}
    if model_type == "WordPiece" or "WordPiece" in decoder_types:
        raise ValueError(
            "response_format needs a BPE, Unigram or character tokenizer; WordPiece pieces cannot be constrained"
        )
    if "ByteLevel" in decoder_types:
        return xgrammar.VocabType.BYTE_LEVEL, False
    if "ByteFallback" in decoder_types or "Metaspace" in decoder_types:
        prefix = "Metaspace" in decoder_types and any(
            d.get("prepend_scheme", "always") != "never" or d.get("add_prefix_space", False)
            for d in decoders
            if d and d.get("type") == "Metaspace"
        )
        return xgrammar.VocabType.BYTE_FALLBACK, prefix
    return xgrammar.VocabType.RAW, False


def _compiler(tokenizer: Any) -> xgrammar.GrammarCompiler:
    """The (cached) grammar compiler for an llmlab tokenizer (`tokenizer.backend` is a `tokenizers.Tokenizer`)."""
    compiler = _COMPILERS.get(tokenizer)
    if compiler is not None:
        return compiler
    backend = tokenizer.backend
    vocab_type, add_prefix_space = _vocab_type(json.loads(backend.to_str()))
    vocab = backend.get_vocab(with_added_tokens=True)
    size = max(max(vocab.values()) + 1, int(tokenizer.vocab_size))
    encoded: list[str] = [""] * size  # "" marks a special token: never produced by the grammar
    special = {t.content for t in backend.get_added_tokens_decoder().values() if t.special}
    for token, idx in vocab.items():
        if token not in special:
            encoded[idx] = token
    stops = default_stop_ids(tokenizer)
    info = xgrammar.TokenizerInfo(encoded, vocab_type, vocab_size=size, stop_token_ids=stops, add_prefix_space=add_prefix_space)
    # Compact JSON never needs a raw control character (U+0000-U+001F: strings escape them, separators are
    # spaces), and xgrammar 0.2.9's length-bounded strings (`maxLength`) would let one through unescaped,
    # which no JSON parser accepts: such tokens are removed from the vocabulary the grammar sees.
    for idx, piece in enumerate(info.decoded_vocab):
        if encoded[idx] and any(byte < 0x20 for byte in piece):
            encoded[idx] = ""
    info = xgrammar.TokenizerInfo(encoded, vocab_type, vocab_size=size, stop_token_ids=stops, add_prefix_space=add_prefix_space)
    compiler = xgrammar.GrammarCompiler(info, max_threads=1)
    _COMPILERS[tokenizer] = compiler
    return compiler


def default_stop_ids(tokenizer: Any) -> list[int]:
    """EOS plus the known end-of-turn markers (`<|im_end|>`, `<|eot_id|>`, ...) that are single tokens."""
    ids = {tokenizer.token_to_id(marker) for marker in KNOWN_END_MARKERS}
    if tokenizer.eos_id is not None:
        ids.add(tokenizer.eos_id)
    found = sorted(int(i) for i in ids if i is not None)
    if not found:
        raise ValueError("response_format needs an end token: the tokenizer has no EOS or end-of-turn token")
    return found


class StructuredProcessor:
    """Masks every token the grammar forbids after the reply so far (see the module docstring's contract).

    Args:
        compiled: the compiled grammar (from `build_processor`).
        stop_ids: token ids that end the reply once the document is complete (the request's eos_ids).
    """

    def __init__(self, compiled: xgrammar.CompiledGrammar, stop_ids: Sequence[int]) -> None:
        self.matcher = xgrammar.GrammarMatcher(compiled, override_stop_tokens=[int(i) for i in stop_ids])
        self.vocab_size = compiled.tokenizer_info.vocab_size
        self.bitmask = xgrammar.allocate_token_bitmask(1, self.vocab_size)  # (1, ceil(vocab / 32)) int32
        self.prompt_len: int | None = None
        self.accepted = 0  # generated tokens fed to the matcher so far

    def _catch_up(self, input_ids: torch.Tensor) -> None:
        """Feed the matcher the tokens generated since the previous call (input_ids: (1, T))."""
        if input_ids.dim() != 2 or input_ids.size(0) != 1:
            raise ValueError(f"a StructuredProcessor decodes one row; got input_ids of shape {tuple(input_ids.shape)}")
        if self.prompt_len is None:
            self.prompt_len = input_ids.size(1)
        new = input_ids[0, self.prompt_len + self.accepted :].tolist()
        if input_ids.size(1) < self.prompt_len + self.accepted:
            raise RuntimeError("a StructuredProcessor serves one request: the sequence it was given shrank")
        for token in new:
            if not self.matcher.accept_token(int(token)):
                raise RuntimeError(f"token {token} breaks the response_format grammar (was the mask applied?)")
            self.accepted += 1

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Mask logits (1, V) in place to the tokens the grammar allows next; return them."""
        self._catch_up(input_ids)
        if self.matcher.is_terminated():
            raise RuntimeError("the response_format document ended with a stop token; the request should have stopped")
        self.matcher.fill_next_token_bitmask(self.bitmask)
        width = min(logits.size(-1), self.vocab_size)
        xgrammar.apply_token_bitmask_inplace(logits, self.bitmask, vocab_size=width)
        if logits.size(-1) > width:  # model rows past the tokenizer's vocabulary decode to nothing
            logits[:, width:] = float("-inf")
        return logits

    @property
    def is_complete(self) -> bool:
        """True once the tokens so far form a whole document (a stop token may follow)."""
        return bool(self.matcher.is_completed())


def _schema_of(response_format: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON schema inside a `json_schema` response_format; ValueError naming what is missing."""
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping) or not isinstance(spec.get("name", ""), str):
        raise ValueError('response_format.json_schema must be an object {"name": str, "schema": {...}, "strict": bool}')
    schema = spec.get("schema", {})
    if not isinstance(schema, Mapping):
        raise ValueError("response_format.json_schema.schema must be a JSON object (a JSON Schema)")
    return dict(schema)


def compile_response_format(tokenizer: Any, response_format: Mapping[str, Any]) -> xgrammar.CompiledGrammar | None:
    """The compiled grammar for an OpenAI `response_format` (None for `{"type": "text"}`).

    `json_object` allows any JSON object; `json_schema` allows the documents valid under the schema (properties
    and items the schema does not list are not generated, as with OpenAI's `strict`). Whitespace is compact
    (`, ` and `: `), so a small model cannot spin on newlines.

    Raises:
        ValueError: one line, for an unknown type, a malformed json_schema or a schema xgrammar cannot compile.
    """
    if not isinstance(response_format, Mapping):
        raise ValueError('response_format must be an object such as {"type": "json_object"}')
    kind = response_format.get("type")
    if kind not in RESPONSE_FORMAT_TYPES:
        raise ValueError(f"response_format.type must be one of {', '.join(RESPONSE_FORMAT_TYPES)} (got {kind!r})")
    if kind == "text":
        return None
    compiler = _compiler(tokenizer)
    if kind == "json_object":
        return compiler.compile_json_schema({"type": "object"}, any_whitespace=False, strict_mode=False)
    schema = _schema_of(response_format)
    try:
        return compiler.compile_json_schema(schema, any_whitespace=False, strict_mode=True)
    except (RuntimeError, ValueError, TypeError) as error:
        reason = _XGRAMMAR_LOG_PREFIX.sub("", " ".join(str(error).split()))[:200]
        raise ValueError(f"response_format.json_schema.schema is not a usable JSON Schema: {reason}") from None


def build_processor(
    tokenizer: Any, response_format: Mapping[str, Any], stop_ids: Sequence[int] | None = None
) -> StructuredProcessor | None:
    """A fresh per-request processor enforcing `response_format` (None for `{"type": "text"}`).

    Args:
        tokenizer: the llmlab tokenizer of the served model (`tokenizer.backend` is a `tokenizers.Tokenizer`).
        response_format: OpenAI's `{"type": "json_object"}` or `{"type": "json_schema", "json_schema":
            {"name": ..., "schema": {...}, "strict": ...}}` (or `{"type": "text"}`).
        stop_ids: the request's eos_ids (default: EOS + single-token end-of-turn markers).

    Raises:
        ValueError: one line naming the bad part of response_format (the server answers 400,
            param "response_format").
    """
    compiled = compile_response_format(tokenizer, response_format)
    if compiled is None:
        return None
    return StructuredProcessor(compiled, default_stop_ids(tokenizer) if stop_ids is None else stop_ids)
