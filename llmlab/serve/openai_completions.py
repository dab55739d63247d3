"""POST /v1/completions (https://platform.openai.com/docs/api-reference/completions/create).

`prompt` is a string, a list of strings, a list of token ids or a list of token-id lists; each prompt gets `n`
choices (choice index = prompt index x n + j). `echo` puts the prompt text before the completion; `suffix`
(insertion) is refused with a 400, as are `best_of` != n and `echo` together with `logprobs` (prompt logprobs
are not computed). An empty prompt starts from EOS (else BOS), like `llmlab generate`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from llmlab.serve.choices import Piece, ServeState, merge_choices, stream_choice
from llmlab.serve.errors import bad_request
from llmlab.serve.openai_common import collect, make_sampling, sse, submit_all, token_budget
from llmlab.serve.openai_schema import CompletionRequest, new_id, now, usage

router = APIRouter()


def _prompts(state: ServeState, body: CompletionRequest) -> list[list[int]]:
    """The prompts as token-id lists (400 for what is not served)."""
    if body.suffix:
        raise bad_request("suffix (insertion) is not supported by this server; send the prompt only", "suffix")
    if body.best_of is not None and body.best_of != body.n:
        raise bad_request("best_of is not supported (use n)", "best_of")
    if body.logit_bias:
        raise bad_request("logit_bias is not supported by this server", "logit_bias")
    if body.echo and body.logprobs is not None:
        raise bad_request("echo with logprobs is not supported (prompt logprobs are not computed)", "echo")
    prompt = body.prompt
    raw = [prompt] if isinstance(prompt, str) or (prompt and isinstance(prompt[0], int)) else list(prompt)
    if not raw:
        raise bad_request("prompt must not be an empty list", "prompt")
    vocab = state.tokenizer.vocab_size
    ids: list[list[int]] = []
    for item in raw:
        tokens = list(state.tokenizer.encode(item)) if isinstance(item, str) else [int(t) for t in item]
        if not tokens:
            tokens = [t for t in (state.tokenizer.eos_id, state.tokenizer.bos_id) if t is not None][:1]
        if not tokens or not all(0 <= t < vocab for t in tokens):
            raise bad_request(f"prompt token ids must be in 0..{vocab - 1} and not empty", "prompt")
        ids.append(tokens)
    return ids


def _logprobs(state: ServeState, pieces: list[Piece], offset: int) -> dict[str, Any]:
    """Legacy completions logprobs: tokens, token_logprobs, top_logprobs ({token: logprob}), text_offset."""
    decode = state.tokenizer.decode
    out: dict[str, list[Any]] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for piece in pieces:
        for token, logprob, top in piece.tokens:
            text = decode([token])
            out["tokens"].append(text)
            out["token_logprobs"].append(logprob)
            out["top_logprobs"].append({decode([t]): v for t, v in (top or [])})
            out["text_offset"].append(offset)
            offset += len(text)
    return out


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    """Continue the prompt(s) (streamed as SSE chunks with `stream: true`)."""
    state: ServeState = request.app.state.serve
    prompts = _prompts(state, body)
    stop_ids, stops = state.eos_ids(), body.stop_list()
    jobs, meta = [], []
    for p, prompt in enumerate(prompts):
        budget = token_budget(state, len(prompt), body.max_tokens, "prompt", "max_tokens")
        for j in range(body.n):
            jobs.append((prompt, make_sampling(body, budget, stops, j), stop_ids, [], body.logprobs))
            meta.append(prompt)
    streams = submit_all(state, jobs)
    pieces = merge_choices(
        [stream_choice(i, s, state.tokenizer, meta[i], stop_ids, stops) for i, s in enumerate(streams)]
    )
    head = {"id": new_id("cmpl"), "created": now(), "model": state.model_name, "object": "text_completion"}
    prompt_tokens = sum(len(p) for p in prompts)
    echoes = [state.tokenizer.decode(p) if body.echo else "" for p in meta]
    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return sse(_chunks(state, head, echoes, prompt_tokens, pieces, include_usage, body.logprobs is not None))
    collected = await collect(request, pieces)
    choices, completion = [], 0
    for i, echo in enumerate(echoes):
        mine = [piece for piece in collected if piece.index == i]
        completion += mine[-1].completion_tokens
        choices.append(
            {
                "index": i,
                "text": echo + "".join(piece.text for piece in mine),
                "logprobs": _logprobs(state, mine, len(echo)) if body.logprobs is not None else None,
                "finish_reason": mine[-1].finish_reason,
            }
        )
    return JSONResponse({**head, "choices": choices, "usage": usage(prompt_tokens, completion)})


async def _chunks(
    state: ServeState,
    head: dict[str, Any],
    echoes: list[str],
    prompt_tokens: int,
    pieces: AsyncIterator[Piece],
    include_usage: bool,
    with_logprobs: bool,
) -> AsyncIterator[dict[str, Any]]:
    extra = {"usage": None} if include_usage else {}

    def chunk(index: int, text: str, finish: str | None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {**head, "choices": [choice], **extra}

    for i, echo in enumerate(echoes):
        if echo:
            yield chunk(i, echo, None)
    offsets = [len(e) for e in echoes]
    completion = 0
    async for piece in pieces:
        logprobs = _logprobs(state, [piece], offsets[piece.index]) if with_logprobs else None
        offsets[piece.index] += len(piece.text)
        yield chunk(piece.index, piece.text, piece.finish_reason, logprobs)
        if piece.finish_reason is not None:
            completion += piece.completion_tokens
    if include_usage:
        yield {**head, "choices": [], "usage": usage(prompt_tokens, completion)}
