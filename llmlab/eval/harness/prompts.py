"""Prompts: documents through the task's Jinja2 templates, and few-shot contexts, with lm-evaluation-harness's
semantics (0.4.x, `ConfigurableTask.doc_to_*`, `fewshot_context`, `ContextSampler`):

- a template that is exactly a field name returns that field's value (any type); otherwise it is rendered
  with Jinja2 (undefined names are errors, trailing newlines kept);
- `doc_to_target` of a multiple-choice task rendering to digits is the index of the right choice; a rendered
  `[...]` is parsed as a Python literal (a list of references);
- `doc_to_choice` as a template renders to a Python list literal, e.g. `"{{choices}}"`;
- the context is `description + (q + target_delimiter + a + fewshot_delimiter) per example + q`, and each
  choice or target is scored/generated after `target_delimiter`;
- few-shot examples are drawn by one `random.Random(fewshot_seed)` per task, documents in order: `n + 1`
  samples when the pool holds the evaluated document (which is then dropped), else `n` — never the document
  itself.

Few-shot prompting: Brown et al. 2020, "Language Models are Few-Shot Learners", https://arxiv.org/abs/2005.14165.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Sequence
from typing import Any

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateError

from llmlab.eval.harness.task import Doc, TaskConfig

_ENV = Environment(loader=BaseLoader(), undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = lambda s, pattern, repl, count=0: re.sub(pattern, repl, s, count=count)


def render(task: TaskConfig, key: str, template: str, doc: Doc) -> Any:
    """`doc[template]` when the template is a field name, else the rendered template (ValueError naming the key)."""
    if template in doc:
        return doc[template]
    try:
        return _ENV.from_string(template).render(**doc)
    except TemplateError as e:
        raise ValueError(f"task {task.name}: {key} {template!r} fails on a document ({e}); fix the template") from None


def doc_to_text(task: TaskConfig, doc: Doc) -> str:
    """The question part of a document."""
    return str(render(task, "doc_to_text", task.doc_to_text, doc))


def doc_to_choice(task: TaskConfig, doc: Doc) -> list[str]:
    """The candidate answers of a multiple-choice document."""
    if isinstance(task.doc_to_choice, list):
        return list(task.doc_to_choice)
    value = render(task, "doc_to_choice", str(task.doc_to_choice), doc)
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (SyntaxError, ValueError):
            raise ValueError(f"task {task.name}: doc_to_choice must give a list, got {value!r}") from None
    if not isinstance(value, list) or not value:
        raise ValueError(f"task {task.name}: doc_to_choice must give a non-empty list, got {value!r}")
    return [str(c) for c in value]


def doc_to_target(task: TaskConfig, doc: Doc) -> int | str | list[str]:
    """The right answer: a choice index or text (multiple choice), a reference text or list of references."""
    if isinstance(task.doc_to_target, int):
        return task.doc_to_target
    value = render(task, "doc_to_target", task.doc_to_target, doc)
    if not isinstance(value, str):
        return value
    if value.isdigit() and task.doc_to_choice is not None:
        return int(value)
    if len(value) >= 2 and value[0] == "[" and value[-1] == "]":
        try:
            return ast.literal_eval(value)
        except (SyntaxError, ValueError):
            return value
    return value


def gold_index(task: TaskConfig, doc: Doc, choices: Sequence[str]) -> int:
    """Index of the right choice; ValueError when the target is neither a valid index nor one of the choices."""
    target = doc_to_target(task, doc)
    if isinstance(target, int) and 0 <= target < len(choices):
        return target
    if isinstance(target, str) and target in choices:
        return list(choices).index(target)
    raise ValueError(
        f"task {task.name}: target {target!r} is not one of the choices {list(choices)}; fix doc_to_target"
    )


def answer_text(task: TaskConfig, doc: Doc) -> str:
    """The answer shown after a few-shot example's question (the gold choice, or the first reference)."""
    target = doc_to_target(task, doc)
    if task.output_type == "multiple_choice":
        return doc_to_choice(task, doc)[gold_index(task, doc, doc_to_choice(task, doc))]
    return str(target[0] if isinstance(target, list) else target)


class FewshotSampler:
    """lm-eval's `ContextSampler`: one seeded RNG per task, never the evaluated document itself.

    Args:
        pool: the documents examples are drawn from.
        seed: the task's `fewshot_seed`.
        excludes_eval_doc: the pool is the evaluated documents themselves (draw n + 1 and drop the document).
    """

    def __init__(self, pool: Sequence[Doc], seed: int, excludes_eval_doc: bool) -> None:
        self.pool = list(pool)
        self.rng = random.Random(seed)
        self.excludes_eval_doc = excludes_eval_doc

    def sample(self, n: int, doc: Doc) -> list[Doc]:
        """`n` examples for `doc`."""
        if n == 0:
            return []
        others = [d for d in self.pool if d != doc]
        if len(others) < n:
            raise ValueError(f"{n}-shot needs {n} few-shot examples besides the document, the pool has {len(others)}")
        if self.excludes_eval_doc:
            drawn = [d for d in self.rng.sample(self.pool, min(n + 1, len(self.pool))) if d != doc][:n]
        else:
            drawn = [d for d in self.rng.sample(self.pool, n) if d != doc]
        return drawn if len(drawn) == n else self.rng.sample(others, n)


def build_context(task: TaskConfig, doc: Doc, examples: Sequence[Doc]) -> str:
    """description + one `question target_delimiter answer fewshot_delimiter` per example + the question."""
    shots = "".join(
        doc_to_text(task, ex) + task.target_delimiter + answer_text(task, ex) + task.fewshot_delimiter
        for ex in examples
    )
    description = str(render(task, "description", task.description, doc)) if task.description else ""
    return description + shots + doc_to_text(task, doc)
