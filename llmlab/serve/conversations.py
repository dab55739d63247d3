"""The conversation API of the web chat: stored conversations (`llmlab.serve.memory.ConversationStore`) over HTTP.

    GET    /api/conversations                  [{id, name, title, system, created_at, updated_at}], newest first
    POST   /api/conversations                  {"title"?, "system"?} -> 201 the new conversation
    GET    /api/conversations/{id}             the conversation + "messages" + "summary" ({text, upto_message_id}|null)
    DELETE /api/conversations/{id}             204; every row of it is deleted
    POST   /api/conversations/{id}/messages    {"content", "system"?, "temperature"?} -> an SSE stream:
           data: {"delta": "..."}  ...  data: {"done": true, "message_id": N, "summary": "..."|null}
           (or, when the reply fails after the stream started, data: {"error": {"message", "type"}})

The user message is stored before the reply starts, the assistant reply when it ends (a reply cut short by a client
that went away is stored as far as it got, when it is not empty). "summary" in the last event is the summary
written for this request (the oldest turns no longer fit `context_tokens`; see `llmlab.serve.memory`), else null.
Unknown conversations are 404 and bad bodies 422/400 through FastAPI's exceptions, which the app turns into OpenAI's
error shape. The model is reached only through the injected `complete` and `count_tokens` functions.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from llmlab.serve.memory import ConversationStore, FittedPrompt, Message, fit_conversation

Complete = Callable[[list[Message], float], AsyncIterator[str]]  # (messages, temperature) -> text deltas
CountTokens = Callable[[list[Message]], int]  # rendered prompt tokens (chat template + generation prompt)
SUMMARY_TEMPERATURE = 0.0  # summaries are written greedily


class NewConversation(BaseModel):
    title: str | None = Field(default=None, max_length=200)
    system: str | None = None


class NewMessage(BaseModel):
    content: str = Field(min_length=1)
    system: str | None = None
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)


def _found(store: ConversationStore, conversation_id: int) -> dict[str, Any]:
    try:
        return store.conversation(conversation_id)
    except KeyError as e:
        raise HTTPException(status_code=404, detail=str(e.args[0])) from None


async def _fit(
    store: ConversationStore,
    conversation: dict[str, Any],
    user_text: str,
    complete: Complete,
    count_tokens: CountTokens,
    budget: int,
) -> FittedPrompt:
    """The prompt for `user_text`, summarising (with the model) and storing the summary when the turns outgrow it."""
    summary = store.summary(conversation["id"])
    turns = store.messages(conversation["id"], after=summary.upto_message_id if summary else 0)
    fitting = fit_conversation(conversation["system"], summary, turns, user_text, count_tokens, budget)
    try:
        request = next(fitting)
        while True:
            text = "".join([delta async for delta in complete(request, SUMMARY_TEMPERATURE)])
            request = fitting.send(text)
    except StopIteration as done:
        fitted: FittedPrompt = done.value
    if fitted.summary is not None:
        store.add_summary(conversation["id"], fitted.summary.upto_message_id, fitted.summary.text)
    return fitted


def conversations_router(
    store: ConversationStore,
    complete: Complete,
    count_tokens: CountTokens,
    context_tokens: int,
    *,
    reply_tokens: int = 256,
) -> APIRouter:
    """The /api/conversations routes over `store`.

    Args:
        complete: `(messages, temperature) -> async iterator of text deltas`: the model's reply to a chat, at most
            `reply_tokens` tokens long (the caller bounds it).
        count_tokens: tokens of `messages` rendered as a prompt.
        context_tokens: the model's context; prompts are kept to `context_tokens - reply_tokens` tokens.
    """
    budget = context_tokens - reply_tokens
    if budget < 1:
        raise ValueError(f"reply_tokens {reply_tokens} leaves no prompt room in a context of {context_tokens} tokens")
    router = APIRouter(prefix="/api/conversations")

    @router.get("")
    def list_conversations() -> list[dict[str, Any]]:
        return store.list()

    @router.post("", status_code=201)
    def create_conversation(body: NewConversation) -> dict[str, Any]:
        return store.create(title=body.title, system=body.system)

    @router.get("/{conversation_id}")
    def get_conversation(conversation_id: int) -> dict[str, Any]:
        _found(store, conversation_id)
        return store.get(conversation_id)

    @router.delete("/{conversation_id}", status_code=204)
    def delete_conversation(conversation_id: int) -> Response:
        _found(store, conversation_id)
        store.delete(conversation_id)
        return Response(status_code=204)

    @router.post("/{conversation_id}/messages")
    async def post_message(conversation_id: int, body: NewMessage) -> EventSourceResponse:
        conversation = _found(store, conversation_id)
        if body.system is not None:
            store.update(conversation_id, system=body.system)
            conversation = store.conversation(conversation_id)
        try:
            fitted = await _fit(store, conversation, body.content, complete, count_tokens, budget)
        except ValueError as e:  # even the newest message does not fit
            raise HTTPException(status_code=400, detail=str(e)) from None
        store.append(conversation_id, "user", body.content)
        return EventSourceResponse(
            _reply_events(store, conversation_id, fitted, complete, body.temperature), sep="\n", ping=15
        )

    return router


async def _reply_events(
    store: ConversationStore, conversation_id: int, fitted: FittedPrompt, complete: Complete, temperature: float
) -> AsyncIterator[dict[str, str]]:
    """The SSE events of a reply; the reply is stored when it ends (or as far as it got when the client left)."""
    pieces: list[str] = []
    done = False
    try:
        async for delta in complete(fitted.messages, temperature):
            if delta:
                pieces.append(delta)
                yield {"data": json.dumps({"delta": delta}, ensure_ascii=False)}
        message_id = store.append(conversation_id, "assistant", "".join(pieces).strip())
        done = True
        summary = fitted.summary.text if fitted.summary else None
        yield {"data": json.dumps({"done": True, "message_id": message_id, "summary": summary}, ensure_ascii=False)}
    except Exception as e:  # noqa: BLE001 - the stream has started: report the failure in it
        if not done and pieces:
            store.append(conversation_id, "assistant", "".join(pieces).strip())
            done = True
        yield {"data": json.dumps({"error": {"message": str(e) or type(e).__name__, "type": "server_error"}})}
    finally:
        if not done and "".join(pieces).strip():  # the client went away mid-reply
            store.append(conversation_id, "assistant", "".join(pieces).strip())
