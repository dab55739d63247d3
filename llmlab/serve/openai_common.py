"""What POST /v1/chat/completions and /v1/completions share (`openai_chat`, `openai_completions`), following OpenAI's API reference field by field.

Limits (documented in docs/serving.md): a prompt of `max_context` tokens or more is refused (400,
code `context_length_exceeded`, param `messages`/`prompt`); `max_tokens` (or `max_completion_tokens`) above
`--max-tokens-cap` is refused (400, param named), and so is one that does not fit the context after the prompt;
without `max_tokens` a reply may use the rest of the context, up to the cap. A full engine answers 429 with
Retry-After. Streams are Server-Sent Events in OpenAI's chunk shape ending with `data: [DONE]`; a client that
disconnects (streaming or not) cancels its sequences.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from fastapi import Request
from sse_starlette import EventSourceResponse

from llmlab.config.sampling import SamplingConfig
from llmlab.serve.choices import Piece, ServeState, merge_choices, render_chat, stream_choice
from llmlab.serve.errors import APIError, bad_request
from llmlab.serve.openai_schema import (
    ChatCompletionRequest,
    CompletionRequest,
    SamplingFields,
    chat_logprob_entry,
    new_id,
    now,
    usage,
)
from llmlab.serve.runner import QueueFull, RequestStream

RETRY_AFTER_S = 1


def token_budget(state: ServeState, prompt_len: int, max_tokens: int | None, prompt_param: str, tokens_param: str) -> int:
    """How many tokens a choice may generate (see the module docstring); APIError 400 when refused."""
    if prompt_len >= state.max_context:
        raise bad_request(
            f"the prompt has {prompt_len} tokens; this server's context is {state.max_context} tokens "
            f"(prompt + reply): shorten the {prompt_param}",
            prompt_param,
            "context_length_exceeded",
        )
    if max_tokens is not None and max_tokens > state.max_tokens_cap:
        raise bad_request(
            f"{tokens_param}={max_tokens} is above this server's cap of {state.max_tokens_cap} tokens",
            tokens_param,
            "invalid_value",
        )
    room = state.max_context - prompt_len
    if max_tokens is None:
        return min(room, state.max_tokens_cap)
    if max_tokens > room:
        raise bad_request(
            f"this server's context is {state.max_context} tokens; the prompt has {prompt_len} and "
            f"{tokens_param}={max_tokens} does not fit: lower {tokens_param} to {room} or less",
            tokens_param,
            "context_length_exceeded",
        )
    return max_tokens


def make_sampling(body: SamplingFields, max_new_tokens: int, stop: Sequence[str], choice: int) -> SamplingConfig:
    """The engine's SamplingConfig for choice `choice` of `body` (OpenAI's default temperature is 1)."""
    try:
        return SamplingConfig(
            max_new_tokens=max_new_tokens,
            temperature=1.0 if body.temperature is None else body.temperature,
            top_k=body.top_k if body.top_k and body.top_k > 0 else None,
            top_p=body.top_p,
            min_p=body.min_p or None,
            repetition_penalty=body.repetition_penalty,
            frequency_penalty=body.frequency_penalty,
            presence_penalty=body.presence_penalty,
            stop=tuple(stop),
            seed=None if body.seed is None else body.seed + choice,  # n > 1: different, reproducible choices
        ).validate()
    except ValueError as error:
        raise bad_request(str(error)) from None


def submit_all(state: ServeState, jobs: list[tuple[list[int], SamplingConfig, list[int], list[Any], int | None]]) -> list[RequestStream]:
    """Submit every (prompt, sampling, stop ids, processors, logprobs) at once, or none: 429 when they do not fit."""
    runner = state.runner
    if runner is None:
        raise APIError(503, "the model is still loading; retry shortly", type="server_error", headers={"Retry-After": "5"})
    if runner.room() < len(jobs):
        raise _queue_full(f"the server is busy ({runner.max_queue} requests queued or running)")
    try:
        return [runner.stream(prompt, sampling, stops, processors, logprobs) for prompt, sampling, stops, processors, logprobs in jobs]
    except QueueFull as error:
        raise _queue_full(str(error)) from None


def _queue_full(message: str) -> APIError:
    return APIError(429, f"{message}; retry after {RETRY_AFTER_S} s", code="rate_limit_exceeded",
                    headers={"Retry-After": str(RETRY_AFTER_S)})


async def collect(request: Request, pieces: AsyncIterator[Piece]) -> list[Piece]:
    """All pieces of a non-streamed request; stop (cancelling the sequences) if the client disconnects."""

    async def gather() -> list[Piece]:
        return [piece async for piece in pieces]

    task = asyncio.create_task(gather())
    while True:
        done, _ = await asyncio.wait({task}, timeout=0.25)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pieces.aclose()  # type: ignore[attr-defined]
            raise APIError(499, "client disconnected")


async def structured_processors(
    state: ServeState, response_format: dict[str, Any] | None, stop_ids: Sequence[int]
) -> Callable[[], list[Any]]:
    """A factory of per-choice processors enforcing `response_format` (stateful: one per choice); the grammar
    is compiled once, here, so a bad schema is a 400 (param "response_format") before anything is submitted."""
    if (response_format or {}).get("type", "text") == "text":
        return list
    from llmlab.serve.structured import StructuredProcessor, compile_response_format

    try:
        # compiling takes a while for a large vocabulary: off the event loop, so other streams go on
        compiled = await asyncio.to_thread(compile_response_format, state.tokenizer, response_format or {})
    except ValueError as error:
        raise bad_request(str(error), "response_format") from None
    if compiled is None:
        return list
    return lambda: [StructuredProcessor(compiled, stop_ids)]


def sse(events: AsyncIterator[dict[str, Any]]) -> EventSourceResponse:
    """An SSE response of JSON chunks, then `data: [DONE]` (OpenAI's stream framing)."""

    async def frames() -> AsyncIterator[dict[str, str]]:
        async for chunk in events:
            yield {"data": json.dumps(chunk, ensure_ascii=False)}
        yield {"data": "[DONE]"}

    return EventSourceResponse(frames(), ping=15)
