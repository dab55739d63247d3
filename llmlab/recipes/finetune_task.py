"""Encoder task fine-tuning behind ``llmlab finetune task=<task>``: an encoder (default: the packaged
all-MiniLM-L6-v2) + a task head (`llmlab.models.task_heads`) trained on JSONL (`llmlab.data.tasks`).

    llmlab finetune --config configs/finetune/task-sentiment.yaml data.train=train.jsonl data.test=test.jsonl
    llmlab finetune task=token_classification data.train=ner/train.jsonl data.test=ner/test.jsonl
    llmlab finetune task=question_answering --method lora data.train=qa/train.jsonl train.max_iters=300

Methods: `full`, or `lora` / `ia3` on the encoder (`llmlab.peft`; the head always trains, as peft's
`modules_to_save`); adapters are merged into the weights of the saved model. Training is
`llmlab.train.task_loop.TaskTrainer` (exact `--resume` from `checkpoints/last`). The run folder (`out_dir`)
holds `config.yaml`, `metrics.jsonl`, `checkpoints/last/`, and at the end `summary.json` (val/test metrics:
accuracy + macro-F1, Pearson/Spearman, seqeval entity F1, SQuAD EM/F1) and `model/`:

    model/encoder/          the (merged) base model, an llmlab checkpoint
    model/head.safetensors  the head's weights (`classifier.*` / `qa_outputs.*`, HF names)
    model/task.json         task, label names, max_length, QA search settings
    model/tokenizer.json    the tokenizer (with the entity markers for relation classification)

`load_task_model(path)` loads it back as a `TaskModel` whose `.predict(records)` returns one dict per record
(what `llmlab app ... --model RUN` prints).
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmlab.recipes.task_config import TASK_METHODS, TaskFinetuneConfig, load_task_config

__all__ = [
    "TASK_METHODS",
    "TaskFinetuneConfig",
    "TaskModel",
    "finetune_task",
    "is_task_model",
    "load_task_config",
    "load_task_model",
]

TASK_FILE = "task.json"
HEAD_FILE = "head.safetensors"
_WORD = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|\w+|[^\w\s]")  # a CJK character, a word, or one symbol


def default_encoder_path() -> str:
    """The packaged all-MiniLM-L6-v2 (Hugging Face folder), the default `base`."""
    from llmlab.models.bert import minilm_path

    return str(minilm_path())


# ---------------------------------------------------------------------------------------------- the model
@dataclass
class TaskModel:
    """A fine-tuned task model ready to predict: `predict(records)` -> one dict per record.

    Record/prediction formats per task: sequence_classification / regression {"text", "text_pair"?} (or a
    string) -> {"label", "score", "scores"} / {"score"}; token_classification {"tokens"} or {"text"} ->
    {"tags", "entities": [{"type", "text", "start", "end"}]} (offsets in tokens or characters); question_answering
    {"context", "question"} -> {"answer", "start", "end", "score"}; multiple_choice {"question", "choices",
    "context"?} -> {"label", "choice", "scores"}; relation_classification {"text", "head", "tail"} -> {"label",
    "score", "scores"}.
    """

    model: Any
    tokenizer: Any
    task: str
    labels: list[str]
    settings: dict[str, Any]

    def predict(self, records: list[Any], batch_size: int = 32) -> list[dict[str, Any]]:
        """Predictions for `records` (see the class docstring)."""
        return _predict(self, records, batch_size)


def _prepare_records(task: str, records: list[Any]) -> tuple[list[dict[str, Any]], list[list[tuple[int, int]] | None]]:
    """Records as the task's format (strings become {"text"}; NER text is split into words with their
    character spans, returned beside)."""
    out, spans = [], []
    for rec in records:
        rec = {"text": rec} if isinstance(rec, str) else dict(rec)
        word_spans = None
        if task == "token_classification" and "tokens" not in rec:
            if "text" not in rec:
                raise ValueError("token_classification records need 'tokens' (a word list) or 'text'")
            matches = list(_WORD.finditer(rec["text"]))
            rec["tokens"] = [m.group() for m in matches]
            word_spans = [m.span() for m in matches]
        out.append(rec)
        spans.append(word_spans)
    return out, spans


def _entities(tokens: list[str], tags: list[str], word_spans: list[tuple[int, int]] | None, text: str | None) -> list:
    """The entities of a tagged word list: type, text and offsets (characters of `text` when the words came
    from it, else word indices, end exclusive)."""
    from llmlab.eval.metrics.ner import bio_spans

    out = []
    for kind, first, end in bio_spans(tags):
        if word_spans is not None and text is not None:
            start_char, end_char = word_spans[first][0], word_spans[end - 1][1]
            out.append({"type": kind, "text": text[start_char:end_char], "start": start_char, "end": end_char})
        else:
            joiner = "" if all(len(t) == 1 for t in tokens[first:end]) else " "
            out.append({"type": kind, "text": joiner.join(tokens[first:end]), "start": first, "end": end})
    return out


def _predict(tm: TaskModel, records: list[Any], batch_size: int) -> list[dict[str, Any]]:
    from llmlab.data.qa_features import prepare_features
    from llmlab.data.tasks import encode_records
    from llmlab.train.task_loop import decode, run_examples

    recs, spans = _prepare_records(tm.task, records)
    s = tm.settings
    if tm.task == "question_answering":
        examples = prepare_features(recs, tm.tokenizer, s["max_length"], s["doc_stride"])
    else:
        examples, _ = encode_records(tm.task, recs, tm.tokenizer, tm.labels, s["max_length"], with_labels=False)
    logits, _ = run_examples(tm.model, tm.task, examples, batch_size, _pad_id(tm.tokenizer))
    preds = decode(
        tm.task, recs, examples, logits, tm.labels, n_best=s["n_best"], max_answer_length=s["max_answer_length"]
    )
    if tm.task == "token_classification":
        for rec, pred, word_spans in zip(recs, preds, spans, strict=True):
            pred["entities"] = _entities(rec["tokens"], pred["tags"], word_spans, rec.get("text"))
    return preds


def sentence_pool(pooling: str) -> Any:
    """The `TaskHeadModel.sentence_pool` of a `pooling` setting: None for the pooler, else
    `llmlab.embeddings.pooling.pool` with that mode."""
    if pooling == "pooler":
        return None
    from functools import partial

    from llmlab.embeddings.pooling import pool

    return partial(pool, pooling=pooling)


def _pad_id(tokenizer: Any) -> int:
    return tokenizer.pad_id if tokenizer.pad_id is not None else 0


def _head_state(model: Any) -> dict[str, Any]:
    """The head's parameters (everything outside the base model), by name."""
    prefix = "encoder." if model.is_encoder else "decoder.base."
    return {n: p.detach().cpu().contiguous() for n, p in model.state_dict().items() if not n.startswith(prefix)}


def save_task_model(model: Any, tokenizer: Any, task_info: dict[str, Any], directory: Path) -> None:
    """Write `directory` (see the module docstring) atomically; adapters must be merged already."""
    from safetensors.torch import save_file

    from llmlab.io import atomic_write, atomic_write_json, make_temp_dir, replace_path
    from llmlab.models import save_llmlab

    tmp = make_temp_dir(directory)
    try:
        save_llmlab(model.base, tmp / "encoder")
        head = _head_state(model)
        atomic_write(tmp / HEAD_FILE, lambda path: save_file(head, str(path), metadata={"format": "pt"}))  # file_mode()
        tokenizer.save(tmp)
        atomic_write_json(tmp / TASK_FILE, task_info)
        replace_path(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def task_model_dir(path: str | Path) -> Path | None:
    """The task-model folder at `path` (itself, or a run folder's `model/`), or None; reads no weights."""
    folder = Path(path)
    for candidate in (folder, folder / "model"):
        if (candidate / TASK_FILE).is_file():
            return candidate
    return None


def is_task_model(path: str | Path) -> bool:
    """Whether `path` is a `llmlab finetune task=...` run folder or its `model/` (a file check only)."""
    return task_model_dir(path) is not None


def load_task_model(path: str | Path, device: str = "cpu") -> TaskModel:
    """Load a `llmlab finetune task=...` result: a run folder or its `model/` folder.

    Raises:
        FileNotFoundError: no `task.json` there (not a task model: name the run folder or its model/).
    """
    from safetensors.torch import load_file

    from llmlab.models import load_model
    from llmlab.models.task_heads import TaskHeadModel
    from llmlab.tokenizers.core import load_tokenizer

    folder = task_model_dir(path)
    if folder is None:
        raise FileNotFoundError(
            f"{path} has no {TASK_FILE}: give a `llmlab finetune task=...` run folder or its model/"
        )
    info = json.loads((folder / TASK_FILE).read_text(encoding="utf-8"))
    tokenizer = load_tokenizer(folder / "tokenizer.json")
    base = load_model(folder / "encoder", device)
    model = TaskHeadModel(
        base, info["task"], max(1, len(info["labels"])), info["dropout"], _pad_id(tokenizer),
        sentence_pool(info.get("pooling", "pooler")),
    )  # fmt: skip
    head = load_file(str(folder / HEAD_FILE))
    missing = set(_head_state(model)) - set(head)
    if missing:
        raise ValueError(f"{folder / HEAD_FILE} lacks {sorted(missing)[0]}; the folder is incomplete, fine-tune again")
    model.load_state_dict(head, strict=False)
    model.to(device).eval()
    return TaskModel(model, tokenizer, info["task"], list(info["labels"]), info)


# ---------------------------------------------------------------------------------------------- data
def _split(records: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, held out): a seeded shuffle, the last `fraction` held out."""
    if fraction <= 0:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(records) * fraction))
    return [records[i] for i in order[n_val:]], [records[i] for i in order[:n_val]]


def _encode(cfg: TaskFinetuneConfig, records: list[dict], tokenizer: Any, labels: list[str], say: Any) -> list[Any]:
    from llmlab.data.qa_features import prepare_features
    from llmlab.data.tasks import encode_records

    if cfg.task == "question_answering":
        return prepare_features(records, tokenizer, cfg.data.max_length, cfg.data.doc_stride)
    examples, dropped = encode_records(cfg.task, records, tokenizer, labels, cfg.data.max_length)
    if dropped:
        say(f"dropped {dropped} record(s) whose entity markers lie beyond data.max_length={cfg.data.max_length}")
    return examples


def _fingerprint(examples: list[Any], labels: list[str]) -> str:
    """sha256 of the tokenized training examples and label names (a resume must train on the same data)."""
    import hashlib

    h = hashlib.sha256(json.dumps(labels).encode())
    for ex in examples:
        h.update(json.dumps([ex.input_ids, ex.token_type_ids, ex.label, ex.marker_positions]).encode())
    return h.hexdigest()


def _run_identity(cfg: TaskFinetuneConfig) -> dict[str, Any]:
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    keep = ("task", "base", "method", "peft", "labels", "dropout", "pooling", "data")
    return {k: d[k] for k in keep} | {"train": {"seed": d["train"]["seed"]}}


# ---------------------------------------------------------------------------------------------- recipe
def finetune_task(cfg: TaskFinetuneConfig, say: Any = print) -> dict[str, Any]:
    """Fine-tune a task head as configured; return the summary (also `summary.json`). Config, data files and
    the run folder are checked before any model is loaded or anything written.

    Raises:
        ValueError / FileNotFoundError: one line naming the problem.
    """
    from llmlab.data.tasks import read_task_records
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import open_run

    cfg.validate()
    check_runtime(cfg.train.device, cfg.train.precision, "none")
    d = cfg.data
    files = {"train": d.train, "val": d.val, "test": d.test}
    records = {k: read_task_records(p, cfg.task) if p else [] for k, p in files.items()}
    if not d.val:
        records["train"], records["val"] = _split(records["train"], d.val_fraction, cfg.train.seed)
    base = cfg.base or default_encoder_path()
    sources = [p for p in (cfg.base, *files.values()) if p and Path(p).exists()]
    run = open_run(
        cfg.out_dir, "finetune", resume=cfg.resume, overwrite=cfg.overwrite, max_iters=cfg.train.max_iters,
        identity=_run_identity(cfg), sources=sources,
    )  # fmt: skip
    return _finetune(cfg, run, records, base, say)


def _build(cfg: TaskFinetuneConfig, base: str, records: dict[str, list]) -> tuple[Any, Any, list[str], tuple[int, int]]:
    """(task model with the method applied, tokenizer, label names, (trainable, total) parameters)."""
    import torch

    from llmlab.data.tasks import add_entity_markers, label_names
    from llmlab.hub import load_for_inference
    from llmlab.models.task_heads import TaskHeadModel, resize_token_embeddings
    from llmlab.peft import build_peft_config, count_parameters, get_peft_model

    torch.manual_seed(cfg.train.seed)
    loaded = load_for_inference(base)
    encoder, tokenizer = loaded.model, loaded.tokenizer
    labels = list(cfg.labels) or label_names(cfg.task, records["train"])
    if cfg.task == "relation_classification":
        add_entity_markers(tokenizer)
        resize_token_embeddings(encoder, tokenizer.backend.get_vocab_size(with_added_tokens=True))
    model = TaskHeadModel(
        encoder, cfg.task, max(1, len(labels)), cfg.dropout, _pad_id(tokenizer), sentence_pool(cfg.pooling)
    )
    if cfg.method != "full":
        config = build_peft_config(cfg.method, dict(cfg.peft))
        config.base_model_name_or_path = base
        get_peft_model(model.base, config)  # freezes the base, adds adapters
        for name, p in model.named_parameters():
            if name in _head_state(model):
                p.requires_grad_(True)
    return model, tokenizer, labels, count_parameters(model)


def _finetune(cfg: TaskFinetuneConfig, run: Any, records: dict[str, list], base: str, say: Any) -> dict[str, Any]:
    from llmlab.peft import merge_and_unload
    from llmlab.train.run_dir import check_resume
    from llmlab.train.sft_loop import load_trainable
    from llmlab.train.task_loop import MAIN_METRIC, TaskBatchStream, TaskTrainer, decode, run_examples, task_metrics

    model, tokenizer, labels, (trainable, total) = _build(cfg, base, records)
    report = f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
    say(f"{cfg.task} ({cfg.method}) on {base}: {report}")
    examples = {k: _encode(cfg, v, tokenizer, labels, say) for k, v in records.items()}
    if not examples["train"]:
        raise ValueError(f"{cfg.data.train}: no example left after tokenisation (max_length={cfg.data.max_length})")
    run_info = {**_run_identity(cfg), "data_sha256": _fingerprint(examples["train"], labels)}
    if run.resume_state is not None:
        check_resume(run.resume_state.get("run", {}), run_info, run.path)
        load_trainable(model, run.last)
    pad_id, ebs, d = _pad_id(tokenizer), cfg.train.eval_batch_size, cfg.data

    def scores(m: Any, split: str, prefix: str) -> dict[str, float]:
        logits, loss = run_examples(m, cfg.task, examples[split], ebs, pad_id)
        preds = decode(cfg.task, records[split], examples[split], logits, labels, n_best=d.n_best,
                       max_answer_length=d.max_answer_length)  # fmt: skip
        metrics = task_metrics(cfg.task, records[split], preds, d.lang)
        return {f"{prefix}_loss": loss, **{f"{prefix}_{k}": v for k, v in metrics.items()}}

    stream = TaskBatchStream(cfg.task, examples["train"], cfg.train.batch_size, pad_id, cfg.train.data_order_seed)
    run.create(dataclasses.replace(cfg, resume=False))
    with run.guard():
        trainer = TaskTrainer(
            model, stream, cfg.train, cfg.optim, cfg.schedule, run.path,
            evaluate_fn=(lambda m: scores(m, "val", "val")) if records["val"] else None,
            say=say, resume_state=run.resume_state, run_info=run_info,
        )  # fmt: skip
        summary = trainer.fit()
        model.to("cpu")
        for split in ("val", "test"):
            if records[split]:
                summary.update(scores(model, split, split))
        if cfg.method != "full":
            merge_and_unload(model.base)
        info = {
            "task": cfg.task, "labels": labels, "dropout": cfg.dropout, "pooling": cfg.pooling,
            "max_length": d.max_length, "doc_stride": d.doc_stride, "max_answer_length": d.max_answer_length,
            "n_best": d.n_best, "lang": d.lang, "base": base, "main_metric": MAIN_METRIC[cfg.task],
        }  # fmt: skip
        save_task_model(model, tokenizer, info, Path(run.path) / "model")
        summary.update(
            task=cfg.task, method=cfg.method, base=base, labels=labels, trainable=report, trainable_params=trainable,
            total_params=total,
            train_examples=len(records["train"]), val_examples=len(records["val"]),
            test_examples=len(records["test"]), model=str(Path(run.path) / "model"),
            checkpoint=str(run.last), out_dir=str(run.path),
        )  # fmt: skip
        run.write_summary(summary)
        say(describe(summary))
    return summary


def describe(summary: dict[str, Any]) -> str:
    """The lines `llmlab finetune task=...` prints at the end."""
    lines = [f"{k}: {v:.4f}" for k, v in summary.items() if k.startswith(("val_", "test_")) and isinstance(v, float)]
    lines.append(f"wall_time_s: {summary.get('wall_time_s', 0.0):.1f}")
    lines.append(f"saved: {summary['model']} (resume state: {summary['checkpoint']})")
    return "\n".join(lines)
