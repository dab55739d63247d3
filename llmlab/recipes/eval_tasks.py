"""`llmlab eval run`: evaluate one model (or an ensemble of several) on harness tasks, print the results table,
and optionally write `results.json` + `samples_<task>.jsonl` into an output folder.

    llmlab eval run --tasks sentiment_en,arithmetic_2digit                # the packaged SmolLM2, zero-shot
    llmlab eval run --tasks my_task.yaml --model runs/pretrain --num-fewshot 5 --output evals/pretrain

Everything the user can get wrong (task names and files, the tasks' data and few-shot pools, counts, the output
folder) is checked before a model is loaded. The output folder follows llmlab's output-folder policy
(`llmlab.io.check_output_dir`): it is built beside the target and swapped in whole, and a folder llmlab did not
create is never replaced.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llmlab.eval.ensemble import ENSEMBLE_METHODS, EnsembleLM
from llmlab.eval.harness.lm import EvalLM, ModelLM
from llmlab.eval.harness.results import format_table, write_results
from llmlab.eval.harness.runner import evaluate, load_task_documents
from llmlab.eval.harness.task import TaskConfig, builtin_task_names, load_task
from llmlab.hub import DEFAULT_MODEL_NAME, load_for_inference
from llmlab.io import building_output, check_output_dir, json_safe
from llmlab.nn.device import resolve_device

VERB = "eval run"


def parse_task_list(tasks: str) -> list[TaskConfig]:
    """`"a,b,path.yaml"` -> validated task configs (ValueError naming the unknown task or the bad YAML key);
    `all` stands for every built-in task."""
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if "all" in names:
        at = names.index("all")
        names[at : at + 1] = [n for n in builtin_task_names() if n not in names]
    if not names:
        raise ValueError("--tasks is empty; pass built-in task names or task YAML paths, separated by commas")
    configs = [load_task(name) for name in names]
    seen: set[str] = set()
    for config in configs:
        if config.name in seen:
            raise ValueError(f"task {config.name!r} is given twice in --tasks; name each task once")
        seen.add(config.name)
    return configs


def build_eval_lm(
    models: list[str | None], *, device: str = "cpu", batch_size: int = 16, ensemble: str | None = None
) -> EvalLM:
    """One `EvalLM` from model paths (None: the packaged SmolLM2): a `ModelLM`, or an ensemble of several.

    Several models need `ensemble` ("mean": probability averaging, "vote": majority voting), which
    `llmlab.eval.ensemble.EnsembleLM` implements.
    """
    check_ensemble_options(models, ensemble)
    members = []
    for path in models:
        loaded = load_for_inference(path, device)
        name = DEFAULT_MODEL_NAME if path is None else str(path)
        members.append(ModelLM(loaded.model, loaded.tokenizer, batch_size=batch_size, name=name))
    if ensemble is None:
        return members[0]
    return EnsembleLM(members, method=ensemble)


def check_ensemble_options(models: list[str | None], ensemble: str | None) -> None:
    """ValueError (one line) for an ensemble request that cannot run; nothing is loaded."""
    if ensemble is not None and ensemble not in ENSEMBLE_METHODS:
        raise ValueError(f"--ensemble must be one of {', '.join(ENSEMBLE_METHODS)}, got {ensemble!r}")
    if len(models) > 1 and ensemble is None:
        raise ValueError(f"{len(models)} models given; pass --ensemble mean or --ensemble vote to combine them")
    if ensemble is not None and len(models) < 2:
        raise ValueError("--ensemble needs at least two --model options")


def run_tasks(
    tasks: str,
    models: list[str | None] | None = None,
    *,
    num_fewshot: int | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    output: Path | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    ensemble: str | None = None,
    as_json: bool = False,
) -> dict[str, dict[str, Any]]:
    """Evaluate `models` on the comma-separated `tasks`; print the table (or JSON); returns per-task metrics."""
    models = models or [None]
    configs = parse_task_list(tasks)
    if num_fewshot is not None and num_fewshot < 0:
        raise ValueError(f"--num-fewshot must be >= 0, got {num_fewshot}")
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of documents, got {limit}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    check_ensemble_options(models, ensemble)
    documents = load_task_documents(configs, num_fewshot)  # data files, builders and few-shot pools, before loading
    sources = [m for m in models if m is not None] + [c.source for c in configs if c.source is not None]
    if output is not None:
        check_output_dir(output, overwrite=overwrite, sources=sources, flag="--output")
    torch_device = str(resolve_device(device))
    lm = build_eval_lm(models, device=torch_device, batch_size=batch_size, ensemble=ensemble)
    meta = {
        "models": [DEFAULT_MODEL_NAME if m is None else str(m) for m in models],
        "ensemble": ensemble,
        "tasks": [c.name for c in configs],
        "num_fewshot": num_fewshot,
        "limit": limit,
        "batch_size": batch_size,
        "device": torch_device,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if output is None:
        results = evaluate(lm, configs, num_fewshot=num_fewshot, limit=limit, documents=documents)
    else:
        with building_output(output, VERB) as folder:
            results = evaluate(
                lm, configs, num_fewshot=num_fewshot, limit=limit, samples_path=folder, documents=documents
            )
            write_results(folder, results, meta)
    if as_json:
        print(json.dumps(json_safe({**meta, "results": results})))
    else:
        print(format_table(results, title=f"model: {lm.name}"))
        if output is not None:
            print(f"results and samples written to {output}")
    return results
