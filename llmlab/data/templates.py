"""Prompt templates for supervised fine-tuning: turn one record into (prompt, response) text segments.

An SFT example is a prompt the model reads and a response it learns to write. The templates here decide the
exact text around them; the loss is (by default) only on the response (see `llmlab.data.sft`).

- `alpaca`: the Stanford Alpaca template (Taori et al. 2023, https://github.com/tatsu-lab/stanford_alpaca),
  with its two wordings, with and without an `input`.
- `alpaca-zh`: the same layout in Chinese (`### 指令:` / `### 输入:` / `### 输出:`), the 输入 section left out
  when `input` is empty (as in Chinese-Alpaca style data sets).
- `chat`: the model's own chat template (Jinja, rendered by `llmlab.tokenizers.chat.apply_chat_template`);
  the response is every assistant turn, the rest (system, user, the template's markup) is prompt.
- `plain`: prompt and response concatenated verbatim (for `prompt`/`completion` records that carry their own
  formatting).

Records come in three formats (auto-detected per line by their keys, see `detect_format`):
`{"instruction", "input"?, "output"}` (Alpaca), `{"messages": [{"role", "content"}, ...]}` (chat) and
`{"prompt", "completion"}`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
ZH_PROMPT_INPUT = "### 指令:\n{instruction}\n\n### 输入:\n{input}\n\n### 输出:\n"
ZH_PROMPT_NO_INPUT = "### 指令:\n{instruction}\n\n### 输出:\n"

TEMPLATE_NAMES = ("alpaca", "alpaca-zh", "chat", "plain")
RECORD_FORMATS = ("auto", "alpaca", "messages", "prompt_completion")
DEFAULT_CHAT_TEMPLATE = "chatml"

Segment = tuple[str, bool]
"""A piece of text and whether it is response (True: the model learns to write it)."""


def detect_format(record: Mapping[str, Any]) -> str:
    """'messages', 'alpaca' or 'prompt_completion' from the record's keys (ValueError naming what is missing)."""
    if "messages" in record:
        return "messages"
    if "instruction" in record:
        return "alpaca"
    if "prompt" in record:
        return "prompt_completion"
    keys = ", ".join(sorted(record)) or "none"
    raise ValueError(
        f"unknown record format (keys: {keys}); expected 'instruction'/'input'/'output', 'messages', or "
        "'prompt'/'completion'"
    )


def _field(record: Mapping[str, Any], key: str, required: bool = True) -> str:
    if key not in record:
        if required:
            raise ValueError(f"missing {key!r} field")
        return ""
    value = record[key]
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def alpaca_prompt(instruction: str, input_text: str = "", template: str = "alpaca") -> str:
    """The prompt text of the `alpaca` or `alpaca-zh` template (the input section only when `input_text`)."""
    if template == "alpaca":
        fmt = ALPACA_PROMPT_INPUT if input_text else ALPACA_PROMPT_NO_INPUT
    elif template == "alpaca-zh":
        fmt = ZH_PROMPT_INPUT if input_text else ZH_PROMPT_NO_INPUT
    else:
        raise ValueError(f"{template!r} is not an Alpaca template; use 'alpaca' or 'alpaca-zh'")
    return fmt.format(instruction=instruction, input=input_text)


def to_messages(record: Mapping[str, Any], fmt: str) -> list[dict[str, str]]:
    """A record of any format as chat messages (Alpaca: user = instruction + blank line + input)."""
    if fmt == "messages":
        messages = record["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("'messages' must be a non-empty list of {'role', 'content'} objects")
        for i, m in enumerate(messages):
            if (
                not isinstance(m, Mapping)
                or not isinstance(m.get("role"), str)
                or not isinstance(m.get("content"), str)
            ):
                raise ValueError(f"message {i} must be an object with string 'role' and 'content'")
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError("'messages' has no assistant turn, so there is nothing to learn")
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    if fmt == "alpaca":
        instruction, input_text = _field(record, "instruction"), _field(record, "input", required=False)
        output = _field(record, "output")
        user = f"{instruction}\n\n{input_text}" if input_text else instruction
        return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    prompt, completion = _field(record, "prompt"), _field(record, "completion")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]


def chat_segments(messages: Sequence[Mapping[str, str]], chat_template: str) -> list[Segment]:
    """Render `messages` with a chat template and mark the assistant turns as response.

    For the i-th assistant turn the conversation before it is rendered with the generation prompt (P_i) and
    the conversation including it without (Q_i); Q_i must extend P_i, and Q_i[len(P_i):] is the response (the
    assistant text plus the template's end-of-turn marker, e.g. `<|im_end|>\\n`, so the model learns to stop).

    Raises:
        ValueError: the template does not render conversations as growing prefixes (it cannot be masked).
    """
    from llmlab.tokenizers.chat import apply_chat_template

    segments: list[Segment] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = apply_chat_template(messages[:i], chat_template, add_generation_prompt=True)
        upto = apply_chat_template(messages[: i + 1], chat_template, add_generation_prompt=False)
        if not before.startswith(done) or not upto.startswith(before):
            raise ValueError(
                "the chat template does not render the conversation as growing prefixes, so assistant turns "
                "cannot be located; use data.template=alpaca or another chat template"
            )
        if len(before) > len(done):
            segments.append((before[len(done) :], False))
        segments.append((upto[len(before) :], True))
        done = upto
    full = apply_chat_template(messages, chat_template, add_generation_prompt=False)
    if full.startswith(done) and len(full) > len(done):  # trailing non-assistant turns: prompt only
        segments.append((full[len(done) :], False))
    return segments


def render_record(record: Mapping[str, Any], fmt: str, template: str, chat_template: str | None) -> list[Segment]:
    """(text, is_response) segments of one record.

    Args:
        record: the parsed JSON object.
        fmt: 'auto' or one of `RECORD_FORMATS`.
        template: one of `TEMPLATE_NAMES`. `messages` records always use the chat template.
        chat_template: the chat template (a name such as 'chatml' or Jinja source); None = 'chatml'.

    Raises:
        ValueError: a missing or mistyped field ("missing 'output'") or an unknown template.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    if template not in TEMPLATE_NAMES:
        raise ValueError(f"unknown template {template!r}; choose one of: {', '.join(TEMPLATE_NAMES)}")
    fmt = detect_format(record) if fmt == "auto" else fmt
    if fmt not in RECORD_FORMATS:
        raise ValueError(f"unknown record format {fmt!r}; choose one of: {', '.join(RECORD_FORMATS)}")
    if fmt == "messages" or template == "chat":
        return chat_segments(to_messages(record, fmt), chat_template or DEFAULT_CHAT_TEMPLATE)
    if fmt == "alpaca":
        instruction, input_text = _field(record, "instruction"), _field(record, "input", required=False)
        output = _field(record, "output")
    else:
        instruction, input_text, output = _field(record, "prompt"), "", _field(record, "completion")
    if template == "plain":
        prompt = f"{instruction}\n\n{input_text}" if input_text else instruction
        return [(prompt, False), (output, True)]
    return [(alpaca_prompt(instruction, input_text, template), False), (output, True)]
