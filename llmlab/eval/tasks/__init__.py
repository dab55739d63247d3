"""The built-in evaluation tasks: one YAML per task in this folder (package data) and the offline dataset
builders they name (`llmlab.eval.tasks.builders.BUILDERS`, `build_task_data`).

Built-in tasks: sentiment_en, sentiment_zh, arithmetic_2digit, shakespeare_cloze, translation_zh_en,
translation_en_zh. The task schema and its loader belong to `llmlab.eval.harness`.
"""

from __future__ import annotations

from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent


def builtin_task_paths() -> dict[str, Path]:
    """Task name (the YAML's stem) -> path of every built-in task YAML."""
    return {path.stem: path for path in sorted(TASKS_DIR.glob("*.yaml"))}
