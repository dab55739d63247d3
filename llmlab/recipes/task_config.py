"""The config of ``llmlab finetune task=<task>`` (encoder task heads): `TaskFinetuneConfig` and its checks.

Tasks (`llmlab.data.tasks.TASKS`): sequence_classification, regression, token_classification,
question_answering, multiple_choice, relation_classification; ``task: seq2seq`` is handled by
`llmlab.recipes.finetune_seq2seq` instead (`llmlab.cli.finetune` dispatches on the key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from llmlab.config import load_config, peek_key
from llmlab.data.tasks import TASKS, check_task
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig, check_renamed_keys, validate_training

TASK_METHODS = ("full", "lora", "ia3")  # methods whose result folds into plain weights (`model/`)
QA_LANGS = ("auto", "en", "zh")
POOLINGS = ("pooler", "mean", "cls", "max")


def task_train_defaults() -> TrainConfig:
    """`TrainConfig` with task fine-tuning's defaults (small batches, short runs, checkpoint at the end)."""
    return TrainConfig(batch_size=16, max_iters=200, eval_interval=50, save_interval=0, eval_batch_size=32)


@dataclass
class TaskDataConfig:
    """The task's data (JSONL in the format of `llmlab.data.tasks`) and how it is tokenized.

    Attributes:
        train: training JSONL.
        val: held-out JSONL evaluated during training (None: hold out `val_fraction` of train).
        test: JSONL scored once at the end (metrics in `summary.json` as `test_*`).
        val_fraction: share of train held out when there is no val file (0: no evaluation during training).
        max_length: longest encoding in tokens (special tokens included).
        doc_stride: QA: tokens shared by consecutive windows of a long context.
        max_answer_length: QA: longest answer in tokens (answer search).
        n_best: QA: start and end candidates per window (answer search).
        lang: QA: answer normalisation for EM/F1 (`auto`: Chinese by characters when the context has CJK).
    """

    train: str | None = None
    val: str | None = None
    test: str | None = None
    val_fraction: float = 0.1
    max_length: int = 128
    doc_stride: int = 32
    max_answer_length: int = 30
    n_best: int = 20
    lang: str = "auto"


@dataclass
class TaskFinetuneConfig:
    """Everything `llmlab finetune task=...` needs (see `configs/finetune/task-*.yaml`).

    Attributes:
        task: one of `llmlab.data.tasks.TASKS`.
        base: the encoder (llmlab/HF folder); None = the packaged all-MiniLM-L6-v2. A decoder (GPT/Llama) works
            for sequence_classification and regression (last-token head).
        method: full | lora | ia3 (PEFT on the base; the head always trains; the result is merged into `model/`).
        peft: keyword arguments of the method's `llmlab.peft` config (e.g. `{r: 8, lora_alpha: 16}`).
        labels: the class names (None/empty: the sorted labels found in the training data).
        dropout: dropout before the head.
        pooling: the sentence vector of the sequence-level heads (sequence classification, regression, multiple
            choice): `pooler` (HF's BertFor*: tanh(dense([CLS])), or [CLS] without a pooler), or `mean` / `cls` /
            `max` over the last hidden states (`llmlab.embeddings.pooling`; mean is how sentence-transformers
            models such as the default MiniLM were trained).
        data: the data files and tokenisation.
        train / optim / schedule: the loop.
        out_dir: the run folder.
        overwrite: replace an earlier llmlab run folder at `out_dir`.
        resume: continue `out_dir/checkpoints/last` exactly (same settings).
    """

    task: str = "sequence_classification"
    base: str | None = None
    method: str = "full"
    peft: dict[str, Any] = field(default_factory=dict)
    labels: list[str] = field(default_factory=list)
    dropout: float = 0.1
    pooling: str = "pooler"
    data: TaskDataConfig = field(default_factory=TaskDataConfig)
    train: TrainConfig = field(default_factory=task_train_defaults)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-5, weight_decay=0.01, betas=[0.9, 0.999]))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=10, min_lr=0.0))
    out_dir: str = "runs/finetune-task"
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError for impossible settings."""
        check_task(self.task)
        if self.method not in TASK_METHODS:
            raise ValueError(
                f"method {self.method!r} is not available for task heads; choose one of: {', '.join(TASK_METHODS)}"
            )
        if self.method == "full" and self.peft:
            raise ValueError("peft settings are only for lora and ia3, not method 'full'")
        if self.method != "full":
            from llmlab.peft import build_peft_config

            build_peft_config(self.method, dict(self.peft)).validate()
        d = self.data
        if not d.train:
            raise ValueError("no training data: set data.train=<file.jsonl>")
        if d.max_length < 8:
            raise ValueError(f"data.max_length must be >= 8, got {d.max_length}")
        if self.task == "question_answering" and not 0 <= d.doc_stride < d.max_length // 2:
            raise ValueError(f"data.doc_stride must be in [0, max_length / 2), got {d.doc_stride}")
        if d.max_answer_length < 1 or d.n_best < 1:
            raise ValueError("data.max_answer_length and data.n_best must be >= 1")
        if not 0.0 <= d.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
        if d.lang not in QA_LANGS:
            raise ValueError(f"unknown data.lang {d.lang!r}; choose one of: {', '.join(QA_LANGS)}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {self.pooling!r}; choose one of: {', '.join(POOLINGS)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"labels must be unique, got {self.labels}")
        validate_training(self.train, self.optim, self.schedule)
        if self.train.distributed not in ("auto", "none"):
            raise ValueError("task fine-tuning runs in one process; set train.distributed=none")
        if self.train.compile:
            raise ValueError("train.compile is not supported for task fine-tuning; set train.compile=false")


def peek_task(config: str | os.PathLike | None, overrides: list[str]) -> str | None:
    """The `task` key of the overrides (last wins) or else of the YAML file: which fine-tuning runs
    (None: supervised fine-tuning of a chat model; "seq2seq": `llmlab.recipes.finetune_seq2seq`; any other
    task: `llmlab.recipes.finetune_task`). A file that cannot be read is left to the config loader to report."""
    task = peek_key(config, overrides, "task")
    return str(task) if task else None


def load_task_config(
    path: str | os.PathLike | None, overrides: list[str] | None = None, method: str | None = None
) -> TaskFinetuneConfig:
    """Defaults, then the YAML, then `key=value` overrides; `method` (the --method option) wins over all."""
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    if method is not None:
        overrides.append(f"method={method}")
    return load_config(TaskFinetuneConfig, path, overrides)


__all__ = [
    "QA_LANGS",
    "TASKS",
    "TASK_METHODS",
    "TaskDataConfig",
    "TaskFinetuneConfig",
    "load_task_config",
    "peek_task",
]
