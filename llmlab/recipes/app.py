"""`llmlab app <task>`: run an application template on a text, a file or a JSONL batch.

Everything the user can get wrong (the task name, the input source, labels, language, decoding options, the
output file) is checked for every input before a model loads. The model is a chat model (default: the packaged
SmolLM2-135M-Instruct) run with the task's template (`llmlab.apps`), or a fine-tuned encoder head from
`llmlab finetune task=...` (`--model RUN/model`; `llmlab.recipes.finetune_task.load_task_model`) for the
tasks one exists for (ner, qa, classify, relation).

Single input (`--text`/`--file`): prints the reply (free-text tasks) or the parsed JSON (structured tasks); a
reply that does not parse is a one-line ValueError (exit 2). `--json` prints one JSON object
`{"task", "lang", "output", "result"}` instead. Batch (`--jsonl IN --out OUT`): one output line per input line,
the input's fields plus `output` and `result`, or `parse_error` (and the batch goes on).

`--constrain` masks the decoding with the task's JSON Schema (`llmlab.serve.structured`, XGrammar), so a
structured reply always parses.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from llmlab.apps import (
    AppInput,
    AppResult,
    AppTemplate,
    ChatRunner,
    get_template,
    parse_labels,
    prepare_input,
    run_task,
    task_list,
)
from llmlab.apps.parse import OutputParseError, decoding_schema
from llmlab.apps.spans import bio_tags, joiner_for
from llmlab.config.sampling import SamplingConfig
from llmlab.io import atomic_write_text
from llmlab.io.files import read_jsonl_records
from llmlab.nn.device import resolve_device
from llmlab.recipes.app_heads import check_head, head_task, run_task_model
from llmlab.recipes.generate import check_template_name
from llmlab.tokenizers.chat import resolve_template


@dataclass
class AppRequest:
    """What `llmlab app` was asked (see the CLI's help for each option)."""

    task: str
    text: str | None = None
    file: Path | None = None
    jsonl: Path | None = None
    out: Path | None = None
    overwrite: bool = False
    model: Path | None = None
    lang: str | None = None
    labels: str | None = None
    question: str | None = None
    style: str | None = None
    max_new_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    constrain: bool = False
    template: str = "auto"
    device: str = "cpu"
    as_json: bool = False


@dataclass
class Job:
    """One checked input: where it came from (for messages), its JSONL record (batch) and the prepared input."""

    where: str
    record: dict[str, Any]
    app_input: AppInput


def _record_text(record: Mapping[str, Any]) -> Any:
    """The text of a JSONL record: `text`, else a QA `context`, else NER `tokens` joined (no space for Chinese)."""
    if "text" in record:
        return record["text"]
    if "context" in record:
        return record["context"]
    tokens = record.get("tokens")
    if isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
        return joiner_for(tokens).join(tokens)
    return None


def _check_sources(request: AppRequest) -> None:
    sources = (("--text", request.text), ("--file", request.file), ("--jsonl", request.jsonl))
    chosen = [flag for flag, value in sources if value is not None]
    if len(chosen) != 1:
        what = "no input" if not chosen else f"{' and '.join(chosen)} together"
        raise ValueError(
            f"llmlab app got {what}; give exactly one of --text TEXT, --file FILE or --jsonl FILE --out FILE"
        )
    if (request.jsonl is None) != (request.out is None):
        raise ValueError("--jsonl IN and --out OUT go together (a batch reads IN and writes one line per input to OUT)")
    for path in (request.file, request.jsonl):
        if path is not None and not path.is_file():
            raise FileNotFoundError(f"input file not found: {path}; check the path")
    if request.out is not None:
        if request.out.resolve() == request.jsonl.resolve():
            raise ValueError(f"--out {request.out} is the input file; choose another --out")
        if request.out.is_dir():
            raise ValueError(f"--out {request.out} is a folder; give a file path such as results.jsonl")
        if request.out.exists() and not request.overwrite:
            raise ValueError(f"--out {request.out} already exists; choose another --out or pass --overwrite")
        if request.out.exists() and not _is_app_output(request.out):
            raise ValueError(
                f"--out {request.out} is not a file llmlab app wrote (JSONL records with 'task' and 'output'), so it "
                "is never replaced, even with --overwrite; choose another --out"
            )


def _is_app_output(path: Path) -> bool:
    """Whether `path` starts with a record `llmlab app --jsonl` writes (the only file --overwrite replaces)."""
    try:
        with path.open(encoding="utf-8") as f:
            record = json.loads(f.readline(1 << 20))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(record, dict) and {"task", "output"} <= record.keys()


def prepare_jobs(request: AppRequest, template: AppTemplate) -> list[Job]:
    """Every input checked and prepared (ValueError naming the first bad one); nothing is loaded."""
    _check_sources(request)
    labels = parse_labels(request.labels)
    options = {"question": request.question, "style": request.style}
    if request.jsonl is None:
        text = request.text if request.text is not None else request.file.read_text(encoding="utf-8")
        where = "--text" if request.text is not None else f"--file {request.file}"
        fields = {"text": text, **options}
        return [Job(where, {}, prepare_input(template, fields, lang=request.lang, labels=labels, where=where))]
    jobs = []
    for lineno, record in read_jsonl_records(request.jsonl):
        where = f"{request.jsonl} line {lineno}"
        if not isinstance(record, dict):
            raise ValueError(f'{where} is not a JSON object; write one object per line, e.g. {{"text": "..."}}')
        fields = {**options, **{k: v for k, v in record.items() if isinstance(v, str)}, "text": _record_text(record)}
        jobs.append(Job(where, record, prepare_input(template, fields, lang=request.lang, labels=labels, where=where)))
    if not jobs:
        raise ValueError(f"{request.jsonl} has no records; write one JSON object per line")
    return jobs


def _sampling(request: AppRequest, template: AppTemplate) -> SamplingConfig:
    given = {"max_new_tokens": request.max_new_tokens, "temperature": request.temperature, "seed": request.seed}
    sampling = template.sampling.replace(**{k: v for k, v in given.items() if v is not None}).validate()
    if sampling.max_new_tokens < 1:
        raise ValueError("--max-new-tokens must be >= 1")
    return sampling


def _check_decoding_options(request: AppRequest, template: AppTemplate, head: bool) -> None:
    """--constrain only for structured tasks; no decoding option at all for an encoder head (it decodes nothing)."""
    if request.constrain and not template.structured:
        raise ValueError(
            f"--constrain applies to structured tasks (ner, relation, classify, intent), not {template.name}"
        )
    given = {
        "--constrain": request.constrain,
        "--max-new-tokens": request.max_new_tokens is not None,
        "--temperature": request.temperature is not None,
        "--seed": request.seed is not None,
        "--template": request.template != "auto",
    }
    flags = [flag for flag, used in given.items() if used]
    if head and flags:
        raise ValueError(f"{', '.join(flags)} set how a chat model decodes; --model {request.model} is an encoder head")


def list_tasks(out: TextIO | None = None) -> None:
    """`llmlab app list`: every task with its one-line description."""
    out = out or sys.stdout
    rows = task_list()
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}", file=out)


def run_app(request: AppRequest, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """`llmlab app`: check everything, load the model, run the task on every input; returns the exit status."""
    out, err = out or sys.stdout, err or sys.stderr
    template = get_template(request.task)
    head = request.model is not None and head_task(request.model) is not None
    if head:
        check_head(request.model, template)
        template = dataclasses.replace(template, labels="optional" if template.labels != "none" else "none")
    jobs = prepare_jobs(request, template)
    sampling = _sampling(request, template)
    _check_decoding_options(request, template, head)
    device = resolve_device(request.device)
    check_template_name(request.template)
    if head:
        results = run_task_model(request.model, template, [(job.record, job.app_input) for job in jobs], device)
    else:
        results = _run_chat_model(request, template, jobs, sampling, device)
    if request.out is not None:
        return _write_batch(request, template, jobs, results, err)
    result = results[0]
    if result.error is not None:
        raise ValueError(result.error)
    if request.as_json:
        print(json.dumps(result.to_json(), ensure_ascii=False), file=out)
    elif template.structured:
        print(json.dumps(result.result, ensure_ascii=False), file=out)
    else:
        print(result.output, file=out)
    return 0


def _run_chat_model(
    request: AppRequest, template: AppTemplate, jobs: list[Job], sampling: SamplingConfig, device: Any
) -> list[AppResult]:
    from llmlab.hub import load_for_inference  # looked up per call (tests patch it)

    loaded = load_for_inference(request.model, device=device)
    chat_template, _ = resolve_template(request.template, loaded.chat_template)
    runner = ChatRunner(loaded.model, loaded.tokenizer, chat_template)
    results = []
    for job in jobs:
        processors = _grammar(runner, template, job.app_input) if request.constrain else []
        try:
            result = run_task(template, job.app_input, runner.complete, sampling, processors)
            if processors and result.error is not None and not processors[0].is_complete:
                reason = f"the reply reached --max-new-tokens {sampling.max_new_tokens} before its JSON was complete"
                result.error = str(OutputParseError(template.name, reason + " (raise it)", result.output))
            results.append(result)
        except ValueError as error:  # e.g. too long for the context
            if request.out is None:
                raise
            failure = AppResult(
                template.name, job.app_input.lang, "", error=f"{job.where}: {error}", error_kind="error"
            )
            results.append(failure)
    return results


def _grammar(runner: ChatRunner, template: AppTemplate, app_input: AppInput) -> list[Any]:
    """A fresh JSON-Schema mask for one reply (`llmlab.serve.structured`)."""
    from llmlab.serve.structured import build_processor

    schema = decoding_schema(template, app_input.labels)
    response_format = {"type": "json_schema", "json_schema": {"name": template.name, "schema": schema}}
    return [build_processor(runner.tokenizer, response_format, stop_ids=runner.stop_ids)]


def _write_batch(
    request: AppRequest, template: AppTemplate, jobs: list[Job], results: list[AppResult], err: TextIO
) -> int:
    lines = []
    for job, result in zip(jobs, results, strict=True):
        record = {**job.record, **result.to_json()}
        tokens = job.record.get("tokens")
        if template.name == "ner" and result.error is None and isinstance(tokens, list):
            record["predicted_tags"] = bio_tags(tokens, result.result, joiner_for(tokens))
        lines.append(json.dumps(record, ensure_ascii=False))
    atomic_write_text(request.out, "\n".join(lines) + "\n")
    failed = sum(result.error is not None for result in results)
    print(f"llmlab: {len(results)} records -> {request.out} ({failed} with parse_error)", file=err, flush=True)
    return 0
