"""From token events to text: one completion choice's deltas, the serving state, and helpers for other routes.

`ServeState` is everything a route needs (runner, tokenizer, chat template, limits, the API key).
`stream_choice` turns one request's `TokenEvent`s into `Piece`s of text: multi-byte characters are never
split (`TextStreamer`), a stop string (or part of one that may still complete) is never shown
(`StopStringHoldback`), the end-of-turn/EOS token is not text. `merge_choices` runs the `n` choices of a request
concurrently and yields their pieces as they come. `complete_text` and `count_chat_tokens` are what the
conversation store (`llmlab.serve.conversations`) injects to reply and to measure a conversation.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from llmlab.config.sampling import SamplingConfig
from llmlab.generate.stopping import StopStringHoldback
from llmlab.generate.streamer import TextStreamer
from llmlab.serve.runner import EngineRunner, RequestStream
from llmlab.tokenizers.chat import apply_chat_template, turn_stops


@dataclass
class ServeState:
    """What the app serves and how (built by `llmlab.recipes.serve`, or by tests around a tiny model).

    Attributes:
        runner: the running engine.
        tokenizer: the llmlab tokenizer of the model.
        chat_template: Jinja source or a built-in name (None: the model has none; chat routes answer 400).
        model_name: the id `/v1/models` lists and responses carry.
        api_key: required as `Authorization: Bearer <key>` on every /v1 route when set.
        cors_origin: the one origin allowed by CORS (None: no CORS headers at all).
        max_context: prompt + reply tokens per request (<= the engine's max_len).
        max_tokens_cap: the most tokens one choice may generate; a larger max_tokens is refused (400).
        extra_routers: more FastAPI routers to mount (the conversation store's /api routes, /v1/embeddings).
        embedding_model_name: the encoder /v1/embeddings serves, also listed by /v1/models (None: no encoder).
        ready: False until the model is loaded (GET /health answers 503 until then).
    """

    runner: EngineRunner | None
    tokenizer: Any
    chat_template: str | None
    model_name: str
    api_key: str | None = None
    cors_origin: str | None = None
    max_context: int = 2048
    max_tokens_cap: int = 2048
    extra_routers: list[Any] = field(default_factory=list)
    embedding_model_name: str | None = None
    ready: bool = True

    def chat_stops(self) -> tuple[list[int], list[str]]:
        """(token ids, text stops) that end an assistant turn with this template (EOS included)."""
        if self.chat_template is None:
            return self.eos_ids(), []
        return turn_stops(self.chat_template, self.tokenizer)

    def eos_ids(self) -> list[int]:
        eos = getattr(self.tokenizer, "eos_id", None)
        return [int(eos)] if eos is not None else []


class Piece(NamedTuple):
    """Some text of choice `index`; `finish_reason` ("stop"/"length") on its last piece, with the totals.

    `tokens`: (token id, logprob, top [(id, logprob)]) of the tokens generated since the previous piece
    (logprob None when not asked for).
    """

    index: int
    text: str
    finish_reason: str | None
    tokens: list[tuple[int, float | None, list[tuple[int, float]] | None]]
    completion_tokens: int


async def stream_choice(
    index: int,
    events: RequestStream,
    tokenizer: Any,
    prompt_ids: Sequence[int],
    stop_ids: Sequence[int],
    stop_strings: Sequence[str],
) -> AsyncIterator[Piece]:
    """The text pieces of one choice as its tokens arrive (see the module docstring)."""
    streamer = TextStreamer(tokenizer, list(prompt_ids))
    holdback = StopStringHoldback(list(stop_strings))
    pending: list[tuple[int, float | None, list[tuple[int, float]] | None]] = []
    count = 0
    async for event in events:
        count += 1
        pending.append((event.token_id, event.logprob, event.top_logprobs))
        text = "" if event.token_id in stop_ids or holdback.stopped else holdback.put(streamer.put(event.token_id))
        if event.finish_reason is not None:
            if not holdback.stopped and event.token_id not in stop_ids:
                text += holdback.put(streamer.end())
            text += holdback.end()
            yield Piece(index, text, event.finish_reason, pending, count)
            return
        if text:
            yield Piece(index, text, None, pending, count)
            pending = []


async def merge_choices(choices: Sequence[AsyncIterator[Piece]]) -> AsyncIterator[Piece]:
    """Run the choices concurrently; yield their pieces in arrival order. Cancelling this cancels them all."""
    if len(choices) == 1:
        async for piece in choices[0]:
            yield piece
        return
    queue: asyncio.Queue[Piece | BaseException | None] = asyncio.Queue()

    async def pump(choice: AsyncIterator[Piece]) -> None:
        try:
            async for piece in choice:
                await queue.put(piece)
        except Exception as error:  # noqa: BLE001 - re-raised by the consumer
            await queue.put(error)
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(choice)) for choice in choices]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()


def render_chat(state: ServeState, messages: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of `messages` rendered with the model's chat template, ending in the assistant header."""
    if state.chat_template is None:
        raise ValueError("this model has no chat template; start the server with --template chatml (or another)")
    text = apply_chat_template(list(messages), state.chat_template, add_generation_prompt=True)
    return list(state.tokenizer.encode(text))


def count_chat_tokens(state: ServeState, messages: Sequence[Mapping[str, str]]) -> int:
    """Prompt tokens of `messages` (`{"role", "content"}` dicts) with the chat template (assistant header too)."""
    return len(render_chat(state, messages))


async def complete_text(
    state: ServeState,
    messages: Sequence[Mapping[str, str]],
    *,
    temperature: float = 0.7,
    max_tokens: int | None = None,
) -> AsyncIterator[str]:
    """Text deltas of the assistant's reply to `messages`, through the runner; ends at the end of the turn.

    Raises:
        ValueError: no chat template, or the conversation leaves no room in `max_context` for a reply.
        QueueFull: the engine is full.
    """
    if state.runner is None:
        raise RuntimeError("the model is not loaded yet")
    prompt = render_chat(state, messages)
    room = min(state.max_context - len(prompt), state.max_tokens_cap)
    if room < 1:
        raise ValueError(f"the conversation has {len(prompt)} tokens; it must leave room in {state.max_context}")
    stop_ids, stop_strings = state.chat_stops()
    sampling = SamplingConfig(
        max_new_tokens=min(max_tokens or room, room), temperature=temperature, stop=tuple(stop_strings)
    ).validate()
    events = state.runner.stream(prompt, sampling, stop_ids)
    async for piece in stream_choice(0, events, state.tokenizer, prompt, stop_ids, stop_strings):
        if piece.text:
            yield piece.text
