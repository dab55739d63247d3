"""POST /v1/chat/completions (https://platform.openai.com/docs/api-reference/chat/create).

The messages are rendered with the model's own chat template; a reply ends at the template's end-of-turn
token or EOS (finish_reason "stop"), a stop string ("stop", the string is not returned) or the token budget
("length"). `n` choices decode concurrently in the engine; `seed` makes choice i use seed + i.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmlab.serve.choices import Piece, ServeState, merge_choices, render_chat, stream_choice
from llmlab.serve.errors import bad_request
from llmlab.serve.openai_common import (
    collect,
    make_sampling,
    sse,
    structured_processors,
    submit_all,
    token_budget,
)
from llmlab.serve.openai_schema import ChatCompletionRequest, chat_logprob_entry, new_id, now, usage

router = APIRouter()


def _messages(body: ChatCompletionRequest) -> list[dict[str, str]]:
    if body.tools:
        raise bad_request("tools are not supported by this server", "tools")
    if body.logit_bias:
        raise bad_request("logit_bias is not supported by this server", "logit_bias")
    return [{"role": "system" if m.role == "developer" else m.role, "content": m.text()} for m in body.messages]


def _logprobs(state: ServeState, piece: Piece) -> list[dict[str, Any]]:
    decode = state.tokenizer.decode
    return [
        chat_logprob_entry(decode([token]), logprob, [(decode([t]), v) for t, v in (top or [])])
        for token, logprob, top in piece.tokens
        if logprob is not None
    ]


@router.post("/v1/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    """Answer a conversation (streamed as SSE chunks with `stream: true`)."""
    state: ServeState = request.app.state.serve
    messages = _messages(body)
    try:
        prompt = render_chat(state, messages)
    except ValueError as error:
        raise bad_request(str(error), "messages") from None
    tokens_param = "max_completion_tokens" if body.max_completion_tokens is not None else "max_tokens"
    budget = token_budget(state, len(prompt), body.max_completion_tokens or body.max_tokens, "messages", tokens_param)
    stop_ids, turn_strings = state.chat_stops()
    stop_strings = [*turn_strings, *body.stop_list()]
    processors = await structured_processors(state, body.response_format, stop_ids)
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    jobs = [(prompt, make_sampling(body, budget, stop_strings, i), stop_ids, processors(), logprobs) for i in range(body.n)]
    streams = submit_all(state, jobs)
    choices = [
        stream_choice(i, s, state.tokenizer, prompt, stop_ids, stop_strings) for i, s in enumerate(streams)
    ]
    pieces = merge_choices(choices)
    head = {"id": new_id("chatcmpl"), "created": now(), "model": state.model_name}
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse(_chunks(state, head, body.n, len(prompt), pieces, include_usage, logprobs is not None))
    return JSONResponse(_response(state, head, body.n, len(prompt), await collect(request, pieces), logprobs))


def _response(
    state: ServeState, head: dict[str, Any], n: int, prompt_len: int, pieces: list[Piece], logprobs: int | None
) -> dict[str, Any]:
    texts, finish, entries, counts = [""] * n, [None] * n, [[] for _ in range(n)], [0] * n
    for piece in pieces:
        texts[piece.index] += piece.text
        entries[piece.index] += _logprobs(state, piece)
        if piece.finish_reason is not None:
            finish[piece.index], counts[piece.index] = piece.finish_reason, piece.completion_tokens
    choices = [
        {
            "index": i,
            "message": {"role": "assistant", "content": texts[i]},
            "logprobs": {"content": entries[i]} if logprobs is not None else None,
            "finish_reason": finish[i],
        }
        for i in range(n)
    ]
    return {**head, "object": "chat.completion", "choices": choices, "usage": usage(prompt_len, sum(counts))}


async def _chunks(
    state: ServeState,
    head: dict[str, Any],
    n: int,
    prompt_len: int,
    pieces: AsyncIterator[Piece],
    include_usage: bool,
    with_logprobs: bool,
) -> AsyncIterator[dict[str, Any]]:
    """OpenAI's chat.completion.chunk sequence: a role delta per choice, content deltas, a finish chunk each."""
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, delta: dict[str, Any], finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "object": "chat.completion.chunk", "choices": [choice], **extra}

    for i in range(n):
        yield chunk(i, {"role": "assistant", "content": ""}, None)
    completion = 0
    async for piece in pieces:
        logprobs = {"content": _logprobs(state, piece)} if with_logprobs else None
        if piece.text or logprobs:
            yield chunk(piece.index, {"content": piece.text}, None, logprobs)
        if piece.finish_reason is not None:
            completion += piece.completion_tokens
            yield chunk(piece.index, {}, piece.finish_reason)
    if include_usage:
        yield {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage(prompt_len, completion)}
