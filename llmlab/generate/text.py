"""Text in, text out: `generate_text` and `stream_generate_text` wrap the token loop with a tokenizer.

They add what only makes sense on text: stop strings are cut from the output (the stop string itself is
never returned, as with the OpenAI `stop` parameter), and streamed deltas never split a multi-byte
character (`TextStreamer`) nor show the beginning of a stop string that may still complete
(`StopStringHoldback`).

    text = generate_text(model, tokenizer, "Q: 2+2?\\nA:", max_new_tokens=20, temperature=0, stop=["\\n"])
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol

import torch
from torch import nn

from llmlab.generate.loop import stream_generate
from llmlab.generate.stopping import StopStringHoldback
from llmlab.generate.streamer import TextStreamer


class TextTokenizer(Protocol):
    """Anything with `encode(str) -> list[int]` and `decode(list[int]) -> str` (llmlab's Tokenizer)."""

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...


def stream_generate_text(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt: str | Sequence[int],
    max_new_tokens: int,
    *,
    stop: str | Sequence[str] | None = None,
    **options: Any,
) -> Iterator[str]:
    """Yield the completion of `prompt` as text deltas; generation ends at EOS, a stop string or the budget.

    Args:
        model: a decoder.
        tokenizer: encodes the prompt and decodes the completion.
        prompt: text, or token ids.
        max_new_tokens: token budget.
        stop: stop string(s); the text is cut right before the first one, which is never yielded.
        **options: every other keyword of `llmlab.generate.stream_generate` (temperature, top_p, seed, ...).

    Yields:
        Non-empty text deltas; their concatenation is the completion.
    """
    ids = tokenizer.encode(prompt) if isinstance(prompt, str) else [int(t) for t in prompt]
    device = next(model.parameters()).device
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    streamer = TextStreamer(tokenizer, ids)
    holdback = StopStringHoldback(stops)
    steps = stream_generate(
        model, torch.tensor([ids], device=device), max_new_tokens, stop=stops or None, tokenizer=tokenizer, **options
    )
    for step in steps:
        delta = holdback.put(streamer.put(int(step[0])))
        if delta:
            yield delta
        if holdback.stopped:
            return
    tail = holdback.put(streamer.end()) + holdback.end()
    if tail:
        yield tail


def generate_text(
    model: nn.Module,
    tokenizer: TextTokenizer,
    prompt: str | Sequence[int],
    max_new_tokens: int,
    *,
    stop: str | Sequence[str] | None = None,
    **options: Any,
) -> str:
    """The completion of `prompt` as one string (without the stop string); see `stream_generate_text`."""
    return "".join(stream_generate_text(model, tokenizer, prompt, max_new_tokens, stop=stop, **options))
