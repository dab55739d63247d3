"""Tasks as YAML files: the typed `TaskConfig`, its validation, and where a task's documents come from.

A task is a name of a built-in task (`llmlab/eval/tasks/<name>.yaml`, package data) or a path to a YAML file.
The schema follows lm-evaluation-harness's task YAML (https://github.com/EleutherAI/lm-evaluation-harness/blob/
main/docs/task_guide.md) where the two share a concept (`doc_to_text`, `doc_to_choice`, `doc_to_target`,
`target_delimiter`, `fewshot_delimiter`, `num_fewshot`, `generation_kwargs`):

    task: sentiment_en
    description: ""                       # text before the few-shot examples
    dataset: {builder: sentiment_en, options: {test_size: 200}}   # or {path: data.jsonl, fewshot_path: train.jsonl}
    output_type: multiple_choice          # or generate_until
    doc_to_text: "Review: {{text}}\\nSentiment:"
    doc_to_choice: ["negative", "positive"]
    doc_to_target: "{{label}}"
    metrics: [acc, acc_norm]

Every problem is a ValueError of one line naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmlab.eval.metrics import LANGS
from llmlab.eval.tasks import builtin_task_paths
from llmlab.io import read_jsonl_records

OUTPUT_TYPES = ("multiple_choice", "generate_until")
METRICS = {
    "multiple_choice": ("acc", "acc_norm", "macro_f1", "ece"),
    "generate_until": ("exact_match", "f1", "bleu", "chrf", "rouge"),
}
DEFAULT_METRICS = {"multiple_choice": ("acc", "acc_norm"), "generate_until": ("exact_match",)}

Doc = dict[str, Any]


@dataclass(frozen=True)
class DatasetSpec:
    """Where documents come from: a registered builder (with options) or a local JSONL file (+ few-shot file)."""

    builder: str | None = None
    path: Path | None = None
    fewshot_path: Path | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskConfig:
    """One evaluation task (see the module docstring for the YAML keys)."""

    name: str
    dataset: DatasetSpec
    output_type: str
    doc_to_text: str
    doc_to_target: str | int
    doc_to_choice: list[str] | str | None = None
    description: str = ""
    target_delimiter: str = " "
    fewshot_delimiter: str = "\n\n"
    num_fewshot: int = 0
    fewshot_seed: int = 1234
    generation_kwargs: dict[str, Any] = field(default_factory=lambda: {"until": ["\n\n"], "max_new_tokens": 32})
    metrics: tuple[str, ...] = ()
    lang: str = "en"
    source: Path | None = None


def builtin_task_names() -> list[str]:
    """Names of the built-in tasks (the YAML files under `llmlab/eval/tasks/`)."""
    return list(builtin_task_paths())


def resolve_task_path(name_or_path: str | Path) -> Path:
    """The YAML file of a built-in task name or a path; ValueError listing the built-in tasks otherwise."""
    text = str(name_or_path)
    if text.endswith((".yaml", ".yml")) or "/" in text or Path(text).is_file():
        path = Path(text).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"task file not found: {path}; pass a task YAML or a built-in task name")
        return path
    builtin = builtin_task_paths().get(text)
    if builtin is not None:
        return builtin
    names = ", ".join(builtin_task_names()) or "none installed"
    raise ValueError(f"unknown task {text!r}; built-in tasks: {names} (or pass a path to a task YAML)")


def load_task(name_or_path: str | Path) -> TaskConfig:
    """Read and validate a task YAML given by built-in name or path."""
    path = resolve_task_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"{path}: not valid YAML{where}; fix the file") from None
    return task_from_dict(raw, path)


def _check_type(path: Path | None, key: str, value: Any, types: type | tuple[type, ...], what: str) -> None:
    """ValueError naming the file and key unless `value` is of `types` (a bool is not an int here)."""
    if not isinstance(value, types) or isinstance(value, bool):
        raise ValueError(f"{path or '<task>'}: {key} must be {what}, got {value!r}")


def _dataset_spec(raw: Any, path: Path | None) -> DatasetSpec:
    where = path or "<task>"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: dataset must be a mapping with builder or path, got {raw!r}")
    unknown = set(raw) - {"builder", "path", "fewshot_path", "options"}
    if unknown:
        raise ValueError(f"{where}: unknown key dataset.{sorted(unknown)[0]}; use builder, path, fewshot_path, options")
    if ("builder" in raw) == ("path" in raw):
        raise ValueError(f"{where}: dataset needs exactly one of dataset.builder and dataset.path")
    options = raw.get("options") or {}
    _check_type(path, "dataset.options", options, dict, "a mapping of builder keyword arguments")
    if "builder" in raw:
        _check_type(path, "dataset.builder", raw["builder"], str, "a builder name")
        if "fewshot_path" in raw:
            raise ValueError(f"{where}: dataset.fewshot_path goes with dataset.path, not with a builder")
        return DatasetSpec(builder=raw["builder"], options=dict(options))
    base = path.parent if path is not None else Path.cwd()
    files = {}
    for key in ("path", "fewshot_path"):
        if key in raw:
            _check_type(path, f"dataset.{key}", raw[key], str, "a JSONL file path")
            files[key] = (base / Path(raw[key]).expanduser()).resolve()
    return DatasetSpec(path=files["path"], fewshot_path=files.get("fewshot_path"), options=dict(options))


def _check_generation(path: Path | None, gen: Any) -> dict[str, Any]:
    where = path or "<task>"
    _check_type(path, "generation_kwargs", gen, dict, "a mapping with until and max_new_tokens")
    unknown = set(gen) - {"until", "max_new_tokens"}
    if unknown:
        raise ValueError(f"{where}: unknown key generation_kwargs.{sorted(unknown)[0]}; use until, max_new_tokens")
    until = gen.get("until", [])
    until = [until] if isinstance(until, str) else until
    if not isinstance(until, list) or not all(isinstance(s, str) for s in until):
        raise ValueError(f"{where}: generation_kwargs.until must be a list of stop strings, got {until!r}")
    max_new = gen.get("max_new_tokens", 32)
    if not isinstance(max_new, int) or isinstance(max_new, bool) or max_new < 1:
        raise ValueError(f"{where}: generation_kwargs.max_new_tokens must be a positive integer, got {max_new!r}")
    return {"until": until, "max_new_tokens": max_new}


def task_from_dict(raw: Any, path: Path | None = None) -> TaskConfig:
    """A validated `TaskConfig` from a parsed YAML mapping (`path`: the file, for messages and relative paths)."""
    where = path or "<task>"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: a task file must be a YAML mapping (task:, dataset:, output_type:, ...)")
    known = {
        "task", "description", "dataset", "output_type", "doc_to_text", "doc_to_choice", "doc_to_target",
        "target_delimiter", "fewshot_delimiter", "num_fewshot", "fewshot_seed", "generation_kwargs", "metrics", "lang",
    }  # fmt: skip
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(sorted(known))}")
    for key in ("task", "dataset", "output_type", "doc_to_text", "doc_to_target"):
        if key not in raw:
            raise ValueError(f"{where}: missing key {key!r}")
    output_type = raw["output_type"]
    if output_type not in OUTPUT_TYPES:
        raise ValueError(f"{where}: output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    _check_type(path, "task", raw["task"], str, "a name")
    for key in ("description", "doc_to_text", "target_delimiter", "fewshot_delimiter"):
        if key in raw:
            _check_type(path, key, raw[key], str, "a string")
    _check_type(path, "doc_to_target", raw["doc_to_target"], (str, int), "a template string or an index")
    choice = raw.get("doc_to_choice")
    if output_type == "multiple_choice":
        if choice is None:
            raise ValueError(f"{where}: doc_to_choice is required for output_type multiple_choice")
        ok = isinstance(choice, str) or isinstance(choice, list) and all(isinstance(c, str) for c in choice)
        if not ok or not choice:
            raise ValueError(f"{where}: doc_to_choice must be a list of strings or a template, got {choice!r}")
    for key, default in (("num_fewshot", 0), ("fewshot_seed", 1234)):
        value = raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or (key == "num_fewshot" and value < 0):
            raise ValueError(f"{where}: {key} must be a non-negative integer, got {value!r}")
    metrics = raw.get("metrics", list(DEFAULT_METRICS[output_type]))
    metrics = [metrics] if isinstance(metrics, str) else metrics
    allowed = METRICS[output_type]
    if not isinstance(metrics, list) or not metrics or any(m not in allowed for m in metrics):
        raise ValueError(
            f"{where}: metrics for {output_type} must be a list from {', '.join(allowed)}, got {metrics!r}"
        )
    lang = raw.get("lang", "en")
    if lang not in LANGS:
        raise ValueError(f"{where}: lang must be one of {', '.join(LANGS)}, got {lang!r}")
    return TaskConfig(
        name=raw["task"],
        dataset=_dataset_spec(raw["dataset"], path),
        output_type=output_type,
        doc_to_text=raw["doc_to_text"],
        doc_to_target=raw["doc_to_target"],
        doc_to_choice=choice,
        description=raw.get("description", ""),
        target_delimiter=raw.get("target_delimiter", " "),
        fewshot_delimiter=raw.get("fewshot_delimiter", "\n\n"),
        num_fewshot=raw.get("num_fewshot", 0),
        fewshot_seed=raw.get("fewshot_seed", 1234),
        generation_kwargs=_check_generation(path, raw.get("generation_kwargs", {"until": ["\n\n"]})),
        metrics=tuple(metrics),
        lang=lang,
        source=path,
    )


def read_jsonl(path: Path) -> list[Doc]:
    """Documents of a JSONL file, one JSON object per non-empty line; errors name the file and line."""
    if not path.is_file():
        raise FileNotFoundError(f"task data file not found: {path}; fix dataset.path in the task YAML")
    docs = []
    for number, doc in read_jsonl_records(path, fix="one JSON object per line"):
        if not isinstance(doc, dict):
            raise ValueError(f"{path} line {number}: a document must be a JSON object, got {type(doc).__name__}")
        docs.append(doc)
    if not docs:
        raise ValueError(f"{path}: no documents; one JSON object per line")
    return docs


def load_documents(task: TaskConfig) -> tuple[list[Doc], list[Doc]]:
    """(test documents, few-shot pool) of `task`. A JSONL task without `fewshot_path` draws few-shot examples
    from its own test documents (never the document being evaluated)."""
    spec = task.dataset
    if spec.path is not None:
        test = read_jsonl(spec.path)
        return test, read_jsonl(spec.fewshot_path) if spec.fewshot_path is not None else test
    from llmlab.eval.tasks.builders import build_task_data

    test, fewshot = build_task_data(spec.builder, **spec.options)
    return list(test), list(fewshot)
