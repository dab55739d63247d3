"""The config of ``llmlab finetune``: `FinetuneConfig` (base, method, ``peft:``, ``partial:``, data, and the shared
``train``/``optim``/``schedule`` sections of `llmlab.train.config`), its validation, and `peft_config`, the one
place that turns ``method`` + ``peft:`` into a typed `llmlab.peft` config (`llmlab.peft.build_peft_config`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from llmlab.config import load_config
from llmlab.data.templates import RECORD_FORMATS, TEMPLATE_NAMES
from llmlab.models.smollm2 import DEFAULT_MODEL_NAME
from llmlab.peft.methods import PEFT_METHODS
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig, check_renamed_keys, validate_training

METHODS = ("full", "partial", *PEFT_METHODS)  # the PEFT methods come from the registry of `llmlab.peft`
DEFAULT_BASE_NAME = DEFAULT_MODEL_NAME  # the packaged SmolLM2, what `base: null` loads
SFT_DISTRIBUTED = ("auto", "none", "ddp")


def sft_train_defaults() -> TrainConfig:
    """`TrainConfig` with fine-tuning's defaults (smaller batches and runs; checkpoints only at the end)."""
    return TrainConfig(batch_size=8, max_iters=200, eval_interval=50, save_interval=0)


@dataclass
class TaskConfig:
    """One data set of a multi-task mixture.

    Attributes:
        name: task name (per-task losses are logged as `loss_<name>` / `val_loss_<name>`).
        path: training JSONL.
        weight: sampling weight (probability = weight / sum of weights).
        val_path: held-out JSONL (None: hold out `data.val_fraction` of `path`).
        format: record format (None = `data.format`).
        template: prompt template (None = `data.template`).
    """

    name: str = ""
    path: str = ""
    weight: float = 1.0
    val_path: str | None = None
    format: str | None = None
    template: str | None = None


@dataclass
class SFTDataConfig:
    """The fine-tuning data.

    Attributes:
        train: training JSONL (a single task named "train"), or None when `tasks` is set.
        val: held-out JSONL for `train` (None: hold out `val_fraction` of it).
        tasks: several data sets mixed by weight (instead of `train`).
        val_fraction: share of each task held out when it has no val file (0 = no evaluation).
        format: auto | alpaca | messages | prompt_completion (auto: decided per line by its keys).
        template: alpaca | alpaca-zh | chat | plain (`messages` records always use the chat template).
        chat_template: a template name (chatml, llama3, zh, llama2) or Jinja source; None = the model's own
            (chatml when it has none).
        max_length: longest example in tokens (longer ones are cut; the model's context is the upper bound).
        train_on_prompt: also learn the prompt tokens (default: loss on the response only).
        add_bos: start every example with the tokenizer's BOS token.
        add_eos: end every response with EOS (so the model learns to stop).
        packing: put several examples into each row (block-diagonal attention; positions restart for Llama).
    """

    train: str | None = None
    val: str | None = None
    tasks: list[TaskConfig] = field(default_factory=list)
    val_fraction: float = 0.1
    format: str = "auto"
    template: str = "alpaca"
    chat_template: str | None = None
    max_length: int = 512
    train_on_prompt: bool = False
    add_bos: bool = False
    add_eos: bool = True
    packing: bool = False


@dataclass
class PartialConfig:
    """`--method partial`: which parameters train (the rest stay frozen).

    Attributes:
        modules: module/parameter names (dotted parts, e.g. `lm_head`, `model.layers.29`, `mlp`).
        last_n_layers: or train the last N Transformer layers.
        include_head: with `last_n_layers`, also train the final norm and the output layer.
    """

    modules: list[str] = field(default_factory=list)
    last_n_layers: int = 0
    include_head: bool = True


@dataclass
class ClassificationConfig:
    """Classification as instruction following: responses are label words.

    Attributes:
        labels: the label words; when set, the held-out accuracy is logged (`val_accuracy`): the predicted
            label is the one with the highest log-likelihood after the prompt.
    """

    labels: list[str] = field(default_factory=list)


@dataclass
class FinetuneConfig:
    """Everything `llmlab finetune` needs (see `configs/finetune/*.yaml`).

    Attributes:
        base: the base model (llmlab/HF folder, run folder or .gguf); None = SmolLM2-135M-Instruct.
        method: one of `METHODS`.
        peft: keyword arguments of the method's `llmlab.peft` config class (e.g. `{r: 8, lora_alpha: 16}`).
        partial: settings of `method: partial`.
        data: the data sets and how they are rendered.
        train: the loop.
        optim: the optimizer.
        schedule: the lr schedule.
        classification: label words for accuracy logging.
        out_dir: the run folder.
        overwrite: replace an earlier llmlab run folder at `out_dir` when the new run starts (never a folder
            llmlab did not create; `llmlab.train.run_dir`).
        resume: continue `out_dir/checkpoints/last` (the `--resume` option); the settings that define the run
            (base, method, peft, partial, data, train.seed) must be those of the checkpoint.
    """

    base: str | None = None
    method: str = "lora"
    peft: dict[str, Any] = field(default_factory=dict)
    partial: PartialConfig = field(default_factory=PartialConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    train: TrainConfig = field(default_factory=sft_train_defaults)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, weight_decay=0.0, betas=[0.9, 0.999]))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=10, min_lr=0.0))
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    out_dir: str = "runs/finetune"
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError for impossible settings."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        d = self.data
        if d.template not in TEMPLATE_NAMES:
            raise ValueError(f"unknown data.template {d.template!r}; choose one of: {', '.join(TEMPLATE_NAMES)}")
        if d.format not in RECORD_FORMATS:
            raise ValueError(f"unknown data.format {d.format!r}; choose one of: {', '.join(RECORD_FORMATS)}")
        if d.max_length < 2:
            raise ValueError(f"data.max_length must be >= 2, got {d.max_length}")
        if not d.train and not d.tasks:
            raise ValueError("no training data: set data.train=<file.jsonl> (or data.tasks)")
        if d.train and d.tasks:
            raise ValueError("set either data.train or data.tasks, not both")
        names = [t.name for t in d.tasks]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"every entry of data.tasks needs a unique name, got {names}")
        if any(not t.path for t in d.tasks):
            raise ValueError("every entry of data.tasks needs a path")
        if self.method == "partial" and not self.partial.modules and self.partial.last_n_layers <= 0:
            raise ValueError("method partial needs partial.modules=[...] or partial.last_n_layers=N")
        if self.method not in PEFT_METHODS and self.peft:
            raise ValueError(f"peft settings are only for {', '.join(PEFT_METHODS)}, not method {self.method!r}")
        if self.method in PEFT_METHODS:
            peft_config(self.method, dict(self.peft))
        if d.packing and self.method == "prompt":
            raise ValueError(
                "packing does not work with prompt tuning (the soft prompt would be shared); set data.packing=false"
            )
        validate_training(self.train, self.optim, self.schedule)
        if self.train.distributed not in SFT_DISTRIBUTED:
            raise ValueError(
                f"unknown train.distributed {self.train.distributed!r} for fine-tuning; choose one of: "
                f"{', '.join(SFT_DISTRIBUTED)} (FSDP is not supported for fine-tuning yet)"
            )
        if self.train.compile:
            raise ValueError("train.compile is not supported for fine-tuning yet; set train.compile=false")


def peft_config(method: str, values: dict[str, Any], base_name: str | None = None, tokenizer: Any = None) -> Any:
    """The one place that turns `method` + the `peft:` section into a typed `llmlab.peft` config
    (`llmlab.peft.build_peft_config`), recording `base_name` and, given a `tokenizer`, tokenizing a prompt/prefix
    init text.

    Raises:
        ValueError: one line naming the `peft.<key>` that is unknown, mistyped or impossible.
    """
    from llmlab.peft import build_peft_config

    config = build_peft_config(method, values)
    config.base_model_name_or_path = base_name
    if tokenizer is not None:
        config.tokenize_init_text(tokenizer.encode)
    return config


def load_finetune_config(
    path: str | os.PathLike | None, overrides: list[str] | None = None, method: str | None = None
) -> FinetuneConfig:
    """Defaults, then the YAML, then `key=value` overrides; `method` (the --method option) wins over all."""
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    if method is not None:
        overrides.append(f"method={method}")
    return load_config(FinetuneConfig, path, overrides)
