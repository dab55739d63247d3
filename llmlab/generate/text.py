"""Text in, text out: `generate_text` and `stream_generate_text` wrap the token loop with a tokenizer.

They add what only makes sense on text: stop strings are cut from the output (the stop string itself is
never returned, as with the OpenAI `stop` parameter), and streamed deltas never split a multi-byte
character (`TextStreamer`) nor show the beginning of a stop string that may still complete
(`StopStringHoldback`).

    sampling = SamplingConfig(max_new_tokens=20, temperature=0, stop=("\\n",))
    text = generate_text(model, tokenizer, "Q: 2+2?\\nA:", sampling=sampling)
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from llmlab.config.sampling import FIELD_NAMES, SamplingConfig, resolve_sampling
from llmlab.generate.loop import stream_generate
from llmlab.generate.stopping import StopStringHoldback
from llmlab.generate.streamer import TextStreamer


class TextTokenizer(Protocol):
    """Anything with `encode(str) -> list[int]` and `decode(list[int]) -> str` (llmlab's Tokenizer)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def vanished_characters(tokenizer: TextTokenizer, text: str) -> list[str]:
    """Characters of `text` that do not come back from `decode(encode(text))`: outside the tokenizer's
    vocabulary (a character tokenizer drops them or maps them to an unknown token), so the model never sees
    them. Sorted, without repeats; [] for byte-level tokenizers, which round-trip every string."""
    if not text:
        return []
    return sorted(set(text) - set(tokenizer.decode(list(tokenizer.encode(text)))))


def text_deltas(
    token_ids: Iterable[int],
    tokenizer: TextTokenizer,
    prompt_ids: Sequence[int],
    stop_strings: Sequence[str] = (),
    stop_ids: Collection[int] = (),
) -> Iterator[str]:
    """Decode generated tokens into non-empty text deltas, ending before a stop id or a stop string.

    Never yields part of a multi-byte character (`TextStreamer`) nor any part of a stop string
    (`StopStringHoldback`). The one detokenizing loop of `generate_text`, `llmlab generate` and chat replies.
    Stops consuming `token_ids` at the first stop id or completed stop string.
    """
    streamer = TextStreamer(tokenizer, list(prompt_ids))
    holdback = StopStringHoldback(list(stop_strings))
    for token_id in token_ids:
        if token_id in stop_ids:
            break
        delta = holdback.put(streamer.put(token_id))
        if delta:
            yield delta
        if holdback.stopped:
            break
    tail = holdback.put(streamer.end()) + holdback.end()
    if tail:
        yield tail


def stream_generate_text(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt: str | Sequence[int],
    max_new_tokens: int | None = None,
    *,
    sampling: SamplingConfig | None = None,
    **options: Any,
) -> Iterator[str]:
    """Yield the completion of `prompt` as text deltas; generation ends at EOS, a stop string or the budget.

    Args:
        model: a decoder.
        tokenizer: encodes the prompt and decodes the completion.
        prompt: text, or token ids.
        max_new_tokens: token budget (overrides `sampling.max_new_tokens`).
        sampling: the decoding parameters; the text is cut right before the first of `sampling.stop`, which
            is never yielded.
        **options: `SamplingConfig` fields and the other keywords of `llmlab.generate.stream_generate`.

    Yields:
        Non-empty text deltas; their concatenation is the completion.
    """
    fields = {k: options.pop(k) for k in list(options) if k in FIELD_NAMES}
    config = resolve_sampling(sampling, fields, max_new_tokens)
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    device = next(model.parameters()).device
    steps = stream_generate(model, torch.tensor([ids], device=device), sampling=config, tokenizer=tokenizer, **options)
    yield from text_deltas((int(step[0]) for step in steps), tokenizer, ids, config.stop)


def generate_text(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt: str | Sequence[int],
    max_new_tokens: int | None = None,
    **options: Any,
) -> str:
    """The completion of `prompt` as one string (without the stop string); the arguments (`sampling=` included)
    are those of `stream_generate_text`."""
    return "".join(stream_generate_text(model, tokenizer, prompt, max_new_tokens, **options))
