"""The application registry: one `AppTemplate` per `llmlab app` task, each with an English and a Chinese prompt.

A template is data, not code: a system prompt, a user prompt with `{fields}` (the input text, a question, the
label set, a style), worked examples shown to the model as earlier chat turns (few-shot prompting, Brown et al.
2020, https://arxiv.org/abs/2005.14165 — a 135M model follows a format it has just seen far better than one it
is only told about), the kind of output (`text`, `label` or `json` with a JSON Schema) and the decoding
defaults (greedy for every structured task, so the same input gives the same parsed result).

    template = get_template("ner")
    template.prompt("zh").system          # the Chinese system prompt
    task_list()                           # [("summarize", "Summarise a text in one or two sentences."), ...]

The templates themselves live in `llmlab.apps.library` (NLP tasks) and `llmlab.apps.library_writing`
(rewriting, stories, copy, code); this module holds the types, the registry and language detection.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from llmlab.config.sampling import SamplingConfig

LANGS = ("en", "zh")
OUTPUT_KINDS = ("text", "label", "json")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


@dataclass(frozen=True)
class Example:
    """One worked example: the input fields (as the user prompt is filled) and the answer the model should give."""

    inputs: Mapping[str, str]
    answer: str


@dataclass(frozen=True)
class Prompt:
    """A template's prompt in one language.

    Attributes:
        system: the system message.
        user: the user message, a `str.format` string over the task's fields (`{text}`, `{question}`, ...).
        examples: worked examples, rendered as user/assistant turns before the real input.
    """

    system: str
    user: str
    examples: tuple[Example, ...] = ()


@dataclass(frozen=True)
class AppTemplate:
    """One application task.

    Attributes:
        name: the task name (`llmlab app NAME`).
        description: one line for `llmlab app list`.
        prompts: `{"en": Prompt, "zh": Prompt}`.
        fields: the input fields the user prompt needs besides `text` (e.g. `("question",)` for qa).
        output: "text" (free text), "label" (one of a label set, parsed into `{"label": ...}`) or "json"
            (a JSON document checked against `schema`).
        schema: the JSON Schema of the parsed result (structured tasks; also used to constrain decoding).
        labels: "required" (the user must give `--labels`), "default" (a default set below, `--labels`
            replaces it), "optional" (`--labels` restricts e.g. the relation types) or "none".
        default_labels: the default label set per language (labels == "default").
        options: named extra fields with their default per language (e.g. rewrite's `style`).
        sampling: decoding defaults (greedy for structured tasks).
        encoder_task: the `llmlab finetune task=` whose fine-tuned encoder head can run this task (None: none).
    """

    name: str
    description: str
    prompts: Mapping[str, Prompt]
    fields: tuple[str, ...] = ()
    output: str = "text"
    schema: Mapping[str, Any] | None = None
    labels: str = "none"
    default_labels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    options: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=128, temperature=0.0)
    encoder_task: str | None = None

    def prompt(self, lang: str) -> Prompt:
        """The prompt in `lang` ('en' or 'zh'); ValueError naming the choices otherwise."""
        return self.prompts[check_lang(lang)]

    @property
    def structured(self) -> bool:
        """True when the output is parsed (a label or a JSON document)."""
        return self.output != "text"


def check_lang(lang: str) -> str:
    """`lang` if it is 'en' or 'zh'; ValueError with the choices otherwise."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; use --lang en or --lang zh (or leave it out to detect it)")
    return lang


def detect_lang(text: str) -> str:
    """'zh' when the text has a CJK ideograph (a Chinese text mixing in English words is still Chinese), else 'en'."""
    return "zh" if _CJK.search(text) else "en"


_REGISTRY: dict[str, AppTemplate] = {}


def register_template(template: AppTemplate) -> AppTemplate:
    """Add a template to the registry; ValueError for a duplicate name or a template missing a language."""
    if template.name in _REGISTRY:
        raise ValueError(f"app task {template.name!r} is registered twice")
    missing = [lang for lang in LANGS if lang not in template.prompts]
    if missing:
        raise ValueError(f"app task {template.name!r} has no prompt for {', '.join(missing)}")
    if template.output not in OUTPUT_KINDS:
        raise ValueError(f"app task {template.name!r}: output must be one of {', '.join(OUTPUT_KINDS)}")
    _REGISTRY[template.name] = template
    return template


def _load_library() -> None:
    """Import the template modules once (they register themselves)."""
    if not _REGISTRY:
        from llmlab.apps import library, library_writing  # noqa: F401 - registers the templates


def task_names() -> list[str]:
    """The task names in registration order."""
    _load_library()
    return list(_REGISTRY)


def get_template(name: str) -> AppTemplate:
    """The template of task `name`; ValueError naming the known tasks otherwise."""
    _load_library()
    if name not in _REGISTRY:
        raise ValueError(f"unknown app task {name!r}; choose one of {', '.join(_REGISTRY)} (see `llmlab app list`)")
    return _REGISTRY[name]


def task_list() -> list[tuple[str, str]]:
    """(name, one-line description) of every task, for `llmlab app list`."""
    return [(name, get_template(name).description) for name in task_names()]
