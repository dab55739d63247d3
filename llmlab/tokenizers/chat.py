"""Chat templates: turn a list of `{"role", "content"}` messages into the one prompt string a model was tuned on.

A chat model only sees text, so every instruction-tuned model fixes a format that marks who speaks (the
"chat template"). Since Hugging Face's chat-template convention (https://huggingface.co/docs/transformers/
chat_templating) the format is a Jinja2 program stored with the tokenizer (`tokenizer.chat_template` in a
GGUF file). We render those the way `transformers` does (a sandboxed Jinja environment with `trim_blocks`,
`lstrip_blocks`, `raise_exception` and `strftime_now`), so `apply_chat_template` gives the exact same string,
and ship four formats of our own:

- `chatml`  — OpenAI's ChatML (`<|im_start|>role\\ncontent<|im_end|>\\n`), used by SmolLM2, Qwen, ...
- `llama2`  — Llama-2-chat (`<s>[INST] <<SYS>>\\n...\\n<</SYS>>\\n\\nuser [/INST] answer </s>`,
  Touvron et al. 2023, https://arxiv.org/abs/2307.09288); requires user/assistant turns to alternate.
- `llama3`  — Llama-3-instruct (`<|start_header_id|>role<|end_header_id|>\\n\\ncontent<|eot_id|>`).
- `zh`      — a plain Chinese format: `系统: ...` / `用户: ...` / `助手: ...`, one line per turn, with the
  generation prompt `助手: `. Only those three roles are allowed.

Example:
    >>> apply_chat_template([{"role": "user", "content": "你好"}], template="zh")
    '用户: 你好\\n助手: '
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

LLAMA2 = (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('llama2 template: after an optional system message, roles must alternate "
    "user/assistant/user/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{{ '<s>[INST] ' + (system if loop.first else '') + message['content'] | trim + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] | trim + ' </s>' }}{% endif %}"
    "{% endfor %}"
)
# Llama-2 has no separate generation prompt: a prompt ending in "[/INST]" is already one.

LLAMA3 = (
    "{{ '<|begin_of_text|>' }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

ZH = (
    "{% set names = {'system': '系统', 'user': '用户', 'assistant': '助手'} %}"
    "{% for message in messages %}"
    "{% if message['role'] not in names %}"
    "{{ raise_exception('zh template: unknown role ' + message['role'] + '; use system, user or assistant') }}"
    "{% endif %}"
    "{{ names[message['role']] + ': ' + message['content'] + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '助手: ' }}{% endif %}"
)

TEMPLATES: dict[str, str] = {"chatml": CHATML, "llama2": LLAMA2, "llama3": LLAMA3, "zh": ZH}
TEMPLATE_CHOICES = ("auto", *TEMPLATES)

# End-of-turn markers of the built-in templates; `zh` puts one turn per line, so its turn ends at "\n".
END_OF_TURN: dict[str, tuple[str, ...]] = {"chatml": ("<|im_end|>",), "llama3": ("<|eot_id|>",), "llama2": ("</s>",)}
TEXT_STOPS: dict[str, tuple[str, ...]] = {"zh": ("\n",)}
# Markers recognised inside a model's own (Jinja) template.
KNOWN_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")


@lru_cache(maxsize=32)
def _compile(source: str) -> Any:
    """Compile a template in a sandbox configured like `transformers`' chat-template environment."""
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False) -> str:
        # Jinja's own tojson escapes HTML characters; chat templates want plain JSON.
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt: str) -> str:
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        return env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as e:
        raise ValueError(f"chat template has a Jinja syntax error on line {e.lineno}: {e.message}") from e


def _check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise ValueError(f"message {i} is a {type(m).__name__}, not a {{'role': ..., 'content': ...}} dict")
        for key in ("role", "content"):
            if key not in m:
                raise ValueError(f"message {i} has no {key!r}; every message needs 'role' and 'content'")
            if not isinstance(m[key], str):
                raise ValueError(f"message {i}: {key!r} must be a string, got {type(m[key]).__name__}")
        out.append(dict(m))
    return out


def apply_chat_template(
    messages: Sequence[Mapping[str, Any]],
    template: str = "chatml",
    add_generation_prompt: bool = True,
    **kwargs: Any,
) -> str:
    """Render a conversation with a chat template.

    Args:
        messages: `[{"role": "system"|"user"|"assistant"|..., "content": str}, ...]`.
        template: a name from `TEMPLATES` (`chatml`, `llama2`, `llama3`, `zh`) or Jinja source, e.g. a
            model's own template from `chat_template_from_gguf(metadata)`.
        add_generation_prompt: end with the header of an assistant turn, so the model writes the answer.
        **kwargs: extra template variables (`bos_token`, `eos_token`, `tools`, ...).

    Returns:
        The prompt string (identical to `transformers`' `apply_chat_template(..., tokenize=False)`).

    Raises:
        ValueError: malformed messages, an unknown template name, or the template rejected the
            conversation (its `raise_exception(...)` message is passed on).
    """
    import jinja2

    msgs = _check_messages(messages)
    if template in TEMPLATES:
        source = TEMPLATES[template]
    elif "{{" in template or "{%" in template:
        source = template
    else:
        raise ValueError(f"unknown chat template {template!r}; use one of {', '.join(TEMPLATES)} or Jinja source")
    try:
        return _compile(source).render(messages=msgs, add_generation_prompt=add_generation_prompt, **kwargs)
    except jinja2.exceptions.TemplateError as e:
        raise ValueError(f"chat template rejected the conversation: {e}") from e


def chat_template_from_gguf(metadata: Mapping[str, Any]) -> str:
    """The model's own chat template (`tokenizer.chat_template`) from GGUF metadata."""
    source = metadata.get("tokenizer.chat_template")
    if not source:
        raise ValueError("this GGUF file has no tokenizer.chat_template; pass a template name such as 'chatml'")
    return str(source)


def resolve_template(template: str, model_template: str | None) -> tuple[str, str]:
    """Pick the chat template: `(name or Jinja source for apply_chat_template, a short label)`.

    Args:
        template: 'auto' (the model's own template), a built-in name (chatml, llama3, llama2, zh) or the
            path of a `.jinja` file.
        model_template: the checkpoint's own template (None when it has none).

    Raises:
        ValueError: 'auto' for a model without a template, or an unknown name.
    """
    if template == "auto":
        if not model_template:
            raise ValueError(
                "this model has no chat template (e.g. a GPT trained with `llmlab pretrain`); "
                "pass --template chatml or --template zh"
            )
        return model_template, "auto"
    if template in TEMPLATES:
        return template, template
    if Path(template).is_file():
        try:
            return Path(template).read_text(encoding="utf-8"), str(template)
        except UnicodeDecodeError:
            raise ValueError(f"chat template file {template} is not UTF-8 text; save it as UTF-8") from None
    raise ValueError(f"unknown chat template {template!r}; use one of {', '.join(TEMPLATE_CHOICES)} or a .jinja file")


def end_of_turn_markers(template: str) -> tuple[str, ...]:
    """The strings that end an assistant turn for a template name or Jinja source."""
    if template in END_OF_TURN:
        return END_OF_TURN[template]
    if template in TEMPLATES:
        return ()
    return tuple(m for m in KNOWN_END_MARKERS if m in template)


def turn_stops(template: str, tokenizer: Any) -> tuple[list[int], list[str]]:
    """What ends an assistant turn: `(token ids, text stop strings)` for a template and tokenizer.

    Token ids: the template's end-of-turn markers that are single tokens, plus EOS. A marker the tokenizer
    splits into several tokens (e.g. ChatML's `<|im_end|>` with a character tokenizer) becomes a text stop,
    as does the end of line for `zh`.
    """
    markers = end_of_turn_markers(template)
    ids = [tokenizer.token_to_id(m) for m in markers]
    stop_ids = sorted({int(i) for i in ids if i is not None})
    if tokenizer.eos_id is not None and int(tokenizer.eos_id) not in stop_ids:
        stop_ids.append(int(tokenizer.eos_id))
    stop_strings = [m for m, i in zip(markers, ids, strict=True) if i is None]
    return stop_ids, stop_strings + list(TEXT_STOPS.get(template, ()))


def chat_messages(system: str | None, history: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """The system message (if any) followed by the conversation `history`."""
    return ([{"role": "system", "content": system}] if system else []) + [dict(m) for m in history]


def render_prompt(tokenizer: Any, template: str, system: str | None, history: Sequence[Mapping[str, str]]) -> list[int]:
    """Token ids of the prompt for `history` (+ system prompt), ending with the assistant header."""
    text = apply_chat_template(chat_messages(system, history), template, add_generation_prompt=True)
    return list(tokenizer.encode(text))


def turn_starts(history: Sequence[Mapping[str, str]]) -> list[int]:
    """Where the turns of `history` start (a turn starts at a user message): the points at which the oldest
    turns can be left out of a prompt without splitting an exchange."""
    return [i for i, m in enumerate(history) if m["role"] == "user"]
