"""Run an application task with a chat model: render the messages, decode the reply, parse it.

    runner = ChatRunner(loaded.model, loaded.tokenizer, chat_template)
    result = run_task(template, app_input, runner.complete, sampling)
    result.output   # the model's raw reply
    result.result   # the parsed result ({"PER": [...]}, {"label": ...}, the text) or None
    result.error    # the one-line parse error, or None

Decoding reuses the library's pieces: the chat template (`llmlab.tokenizers.chat`), the KV-cache loop
(`llmlab.generate.stream_generate`) and the detokenizer that cuts at end-of-turn markers and stop strings
(`llmlab.generate.text.text_deltas`), exactly as `llmlab generate --chat` does. An optional per-input
logits processor (e.g. a JSON-grammar mask from `llmlab.serve.structured`, built by the recipe) goes into the
loop's `logits_processors` slot.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from llmlab.apps.parse import OutputParseError, ground, parse_output
from llmlab.apps.render import AppInput, render_messages
from llmlab.apps.templates import AppTemplate
from llmlab.config.sampling import SamplingConfig
from llmlab.generate import make_generator, stream_generate
from llmlab.generate.text import text_deltas
from llmlab.nn.virtual import context_length
from llmlab.tokenizers.chat import apply_chat_template, turn_stops

# complete(messages, sampling, logits_processors) -> the reply text
Complete = Callable[[list[dict[str, str]], SamplingConfig, Sequence[Any]], str]


@dataclass
class AppResult:
    """One task run: the language used, the raw reply, the parsed result, or the error (one line).

    `error_kind` is "parse_error" (the reply does not parse) or "error" (the input could not be run, e.g. too long
    for the context); it is the key the error is written under.
    """

    task: str
    lang: str
    output: str
    result: Any = None
    error: str | None = None
    error_kind: str = "parse_error"
    dropped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The record written by `--json` and `--jsonl` (`parse_error` instead of `result` when parsing failed;
        `not_in_text` lists extracted names the input does not contain, which the result leaves out)."""
        record: dict[str, Any] = {"task": self.task, "lang": self.lang, "output": self.output}
        if self.error is None:
            record["result"] = self.result
        else:
            record[self.error_kind] = self.error
        if self.dropped:
            record["not_in_text"] = self.dropped
        return record


class ChatRunner:
    """Decode replies of a chat model to rendered messages.

    Args:
        model: an llmlab decoder (eval mode).
        tokenizer: its llmlab tokenizer.
        chat_template: a template name or Jinja source (`llmlab.tokenizers.chat.resolve_template`).
    """

    def __init__(self, model: Any, tokenizer: Any, chat_template: str) -> None:
        self.model, self.tokenizer, self.chat_template = model, tokenizer, chat_template
        self.stop_ids, self.stop_strings = turn_stops(chat_template, tokenizer)
        self.device = next(model.parameters()).device

    def prompt_ids(self, messages: list[dict[str, str]]) -> list[int]:
        """Token ids of the chat prompt (ending with the assistant header)."""
        return list(self.tokenizer.encode(apply_chat_template(messages, self.chat_template)))

    def complete(
        self, messages: list[dict[str, str]], sampling: SamplingConfig, logits_processors: Sequence[Any] = ()
    ) -> str:
        """The model's reply (stripped); ValueError when prompt + reply do not fit in the model's context."""
        ids = self.prompt_ids(messages)
        context = context_length(self.model)
        if len(ids) + sampling.max_new_tokens > context:
            raise ValueError(
                f"the prompt is {len(ids)} tokens and the reply may take {sampling.max_new_tokens}, more than the "
                f"model's context of {context}; shorten the text or lower --max-new-tokens"
            )
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)  # (1, T)
        generator = make_generator(sampling.seed, self.device) if sampling.seed is not None else None
        with torch.no_grad():
            steps = stream_generate(
                self.model,
                input_ids,
                sampling=sampling.replace(stop=()),
                eos_token_id=self.stop_ids,
                generator=generator,
                logits_processors=list(logits_processors),
            )
            tokens = (int(step[0]) for step in steps)
            pieces = text_deltas(tokens, self.tokenizer, ids, [*self.stop_strings, *sampling.stop], self.stop_ids)
            return "".join(pieces).strip()


def run_task(
    template: AppTemplate,
    app_input: AppInput,
    complete: Complete,
    sampling: SamplingConfig,
    logits_processors: Sequence[Any] = (),
) -> AppResult:
    """Render, decode and parse one input. A reply that does not parse gives `error` (never raises for it)."""
    raw = complete(render_messages(template, app_input), sampling, logits_processors)
    try:
        parsed = parse_output(template, raw, app_input.labels)
    except OutputParseError as error:
        return AppResult(template.name, app_input.lang, raw, error=str(error))
    result, dropped = ground(template.name, parsed, app_input.values.get("text", ""))
    return AppResult(template.name, app_input.lang, raw, result, dropped=dropped)
