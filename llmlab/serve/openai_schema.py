"""The request bodies of OpenAI's API (https://platform.openai.com/docs/api-reference), field by field.

`ChatCompletionRequest` (POST /v1/chat/completions) and `CompletionRequest` (POST /v1/completions) validate
what llmlab can honour and refuse the rest clearly (a 400 naming the field). Unknown fields are ignored, as
OpenAI-compatible servers (vLLM, llama.cpp) do. llmlab's extra sampling fields `top_k`, `min_p` and
`repetition_penalty` are accepted at the top level of the body, as vLLM accepts them (the openai client sends
them through `extra_body`).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Stop = str | list[str] | None


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    """A part of a message's `content` list; only text parts are served (no images or audio)."""

    type: Literal["text"]
    text: str


class ChatMessage(_Body):
    """One message of `messages`: system/developer, user or assistant with text content."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (text parts joined)."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(_Body):
    include_usage: bool = False


class SamplingFields(_Body):
    """Fields both endpoints share (OpenAI's ranges)."""

    model: str | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=16)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    max_tokens: int | None = Field(default=None, ge=1)
    presence_penalty: float = Field(default=0.0, ge=-2, le=2)
    frequency_penalty: float = Field(default=0.0, ge=-2, le=2)
    seed: int | None = None
    user: str | None = None
    # llmlab / vLLM extras
    top_k: int | None = Field(default=None, ge=-1)
    min_p: float | None = Field(default=None, ge=0, le=1)
    repetition_penalty: float | None = Field(default=None, gt=0)

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: Stop) -> Stop:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > 4:
            raise ValueError("at most 4 stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences must be non-empty")
        return value

    def stop_list(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    response_format: dict[str, Any] | None = None
    logit_bias: dict[str, float] | None = None
    tools: list[Any] | None = None


class CompletionRequest(SamplingFields):
    """POST /v1/completions."""

    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)  # OpenAI's default for completions
    echo: bool = False
    suffix: str | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    best_of: int | None = None
    logit_bias: dict[str, float] | None = None


def new_id(prefix: str) -> str:
    """An OpenAI-style object id such as `chatcmpl-3f2a...`."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprob_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict[str, Any]:
    """One element of `choices[i].logprobs.content` (chat)."""

    def item(text: str, value: float) -> dict[str, Any]:
        return {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}

    return {**item(token, logprob), "top_logprobs": [item(t, v) for t, v in top]}
