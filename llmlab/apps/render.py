"""Turn a task's template and one input into chat messages: system prompt, worked examples, the real input.

    app_input = prepare_input(get_template("qa"), {"text": passage, "question": "Who?"}, lang=None, labels=None)
    messages = render_messages(get_template("qa"), app_input)
    # [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}, ..., {"role": "user", ...}]

`prepare_input` checks everything a user can get wrong (empty text, a missing question, labels for a task that
takes none, too few labels, an unknown language) with one-line ValueErrors, so the CLI can check every record
before any model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmlab.apps.templates import AppTemplate, check_lang, detect_lang


@dataclass(frozen=True)
class AppInput:
    """One checked input: its language, the values the user prompt is filled with, and the label set (if any)."""

    lang: str
    values: Mapping[str, str]
    labels: tuple[str, ...] = field(default=())


def parse_labels(spec: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """'a, b,c' (or a list) -> ('a', 'b', 'c'), stripped, without repeats; None stays None; ValueError if empty."""
    if spec is None:
        return None
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    labels = tuple(dict.fromkeys(str(item).strip() for item in items if str(item).strip()))
    if not labels:
        raise ValueError("--labels is empty; give comma-separated labels, e.g. --labels positive,negative")
    return labels


def _labels_for(template: AppTemplate, labels: tuple[str, ...] | None, lang: str) -> tuple[str, ...]:
    if template.labels == "none":
        if labels is not None:
            raise ValueError(f"app task {template.name!r} takes no --labels; drop it")
        return ()
    if labels is None:
        if template.labels == "required":
            raise ValueError(f"app task {template.name!r} needs the labels to choose from: add --labels a,b,c")
        return tuple(template.default_labels.get(lang, ()))
    if template.output == "label" and len(labels) < 2:
        raise ValueError(f"app task {template.name!r} needs at least two labels to choose from (got {labels[0]!r})")
    return labels


def prepare_input(
    template: AppTemplate,
    fields: Mapping[str, str | None],
    *,
    lang: str | None = None,
    labels: tuple[str, ...] | None = None,
    where: str = "the input",
) -> AppInput:
    """Check one input for `template` and fill in defaults; ValueError (one line naming `where`) otherwise.

    Args:
        template: the task.
        fields: `text` plus the task's extra fields (`question` for qa) and options (`style` for rewrite);
            a missing or None option takes its default.
        lang: 'en', 'zh' or None (detected from the text: CJK characters => zh).
        labels: the user's labels (`parse_labels`), or None for the task's default set.
        where: how to name the input in errors ("--text", "line 3 of in.jsonl").
    """
    text = fields.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where} has no text for app task {template.name!r}; give a non-empty text")
    language = check_lang(lang) if lang is not None else detect_lang(text)
    values = {"text": text.strip()}
    for name in template.fields:
        value = fields.get(name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"app task {template.name!r} needs a {name} for {where} (--{name} or a {name!r} field)")
        values[name] = value.strip()
    for name, defaults in template.options.items():
        value = fields.get(name)
        values[name] = value.strip() if isinstance(value, str) and value.strip() else defaults[language]
    chosen = _labels_for(template, labels, language)
    if chosen:
        values["labels"] = ", ".join(chosen)
    return AppInput(lang=language, values=values, labels=chosen)


def render_messages(template: AppTemplate, app_input: AppInput) -> list[dict[str, str]]:
    """The chat messages for one input: system, then each worked example as a user/assistant pair, then the input."""
    prompt = template.prompt(app_input.lang)
    messages = [{"role": "system", "content": prompt.system}]
    for example in prompt.examples:
        messages.append({"role": "user", "content": prompt.user.format(**example.inputs)})
        messages.append({"role": "assistant", "content": example.answer})
    messages.append({"role": "user", "content": prompt.user.format(**app_input.values)})
    return messages
