"""`llmlab app --model RUN`: run a task with a fine-tuned encoder head instead of a chat model.

A `llmlab finetune task=...` run folder (or its `model/`, marked by `task.json`) holds an encoder with a task head;
`llmlab.recipes.finetune_task.load_task_model(path).predict(records)` runs it. The head's predictions become the
same results the chat model's parsed replies give, so `llmlab app` prints the same JSON either way:

    app task   head (finetune task=)        record given to predict         result
    ner        token_classification         {"tokens"} or {"text"}          {"PER": [...], "LOC": [...], "ORG": [...]}
    qa         question_answering           {"context", "question"}         the answer span
    classify   sequence_classification      {"text"}                        {"label": ...} (the head's labels)
    relation   relation_classification      {"text", "head", "tail"}        {"label": ...} (entity offsets needed)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmlab.apps import AppInput, AppResult, AppTemplate, get_template, task_names
from llmlab.recipes.finetune_task import TASK_FILE, load_task_model, task_model_dir


def head_task(path: Path) -> str | None:
    """The `finetune task=` a task model was trained for (read from its task.json), or None for other models."""
    folder = task_model_dir(path)
    if folder is None:
        return None
    info = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    return str(info.get("task"))


def check_head(path: Path, template: AppTemplate) -> None:
    """ValueError (one line) when the head at `path` cannot run `template`'s task."""
    task = head_task(path)
    if template.encoder_task == task:
        return
    runs = [name for name in task_names() if get_template(name).encoder_task == task]
    which = f"it runs `llmlab app {runs[0]}`" if runs else "no app task uses it"
    raise ValueError(f"--model {path} is a {task} head; {which}, not {template.name} (or use a chat model)")


def _head_record(template: AppTemplate, record: Mapping[str, Any], app_input: AppInput) -> dict[str, Any]:
    text = app_input.values["text"]
    if template.name == "ner":
        return {"tokens": list(record["tokens"])} if isinstance(record.get("tokens"), list) else {"text": text}
    if template.name == "qa":
        return {"context": text, "question": app_input.values["question"]}
    if template.name == "relation":
        if not (isinstance(record.get("head"), list) and isinstance(record.get("tail"), list)):
            raise ValueError(
                'a relation_classification head needs "head" and "tail" character offsets [start, end] in each '
                "--jsonl record; use a chat model to extract relations from plain text"
            )
        return {"text": text, "head": record["head"], "tail": record["tail"]}
    return {"text": text}


def _result(template: AppTemplate, prediction: Mapping[str, Any]) -> Any:
    if template.name == "ner":
        found: dict[str, list[str]] = {"PER": [], "LOC": [], "ORG": []}
        for entity in prediction.get("entities", []):
            names = found.setdefault(str(entity["type"]), [])
            if entity["text"] not in names:
                names.append(entity["text"])
        return found
    if template.name == "qa":
        return prediction["answer"]
    return {"label": prediction["label"]}


def run_task_model(
    path: Path, template: AppTemplate, jobs: Sequence[tuple[Mapping[str, Any], AppInput]], device: Any
) -> list[AppResult]:
    """Predict every input with the head at `path` (checked with `check_head` first)."""
    check_head(path, template)
    records = [_head_record(template, record, app_input) for record, app_input in jobs]
    predictions = load_task_model(path, device=str(device)).predict(records)
    results = []
    for (_, app_input), prediction in zip(jobs, predictions, strict=True):
        result = _result(template, prediction)
        output = result if isinstance(result, str) else json.dumps(prediction, ensure_ascii=False)
        results.append(AppResult(template.name, app_input.lang, output, result))
    return results
