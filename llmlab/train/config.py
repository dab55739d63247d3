"""`PretrainConfig`: the dataclass tree behind ``llmlab pretrain --config cfg.yaml key=value ...``.

No torch import here: the CLI can load and check a config cheaply.

Sections: ``model`` (a `GPTConfig`; ``preset`` fills it first, explicit ``model.*`` keys win), ``data``,
``train`` (loop, precision, devices, logging), ``optim`` (optimizer + clipping), ``schedule`` (lr schedule),
``out_dir``. ``model.vocab_size`` is always taken from the data folder's ``meta.json``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmlab.config.checks import check_choice, check_finite, check_minimum
from llmlab.models.gpt.config import GPTConfig
from llmlab.train.schedule import SCHEDULES

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DISTRIBUTED_MODES = ("auto", "none", "ddp", "fsdp")
RENAMED_KEYS = {"train.ckpt_interval": "train.save_interval"}


def check_renamed_keys(path: str | Path | None, overrides: Iterable[str]) -> None:
    """One-line ValueError for a renamed key (e.g. ``train.ckpt_interval`` -> ``train.save_interval``), given as
    a ``key=value`` override or in the YAML file at `path`."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if key in RENAMED_KEYS:
            raise ValueError(f"override '{item}': {key} was renamed {RENAMED_KEYS[key]}; use {RENAMED_KEYS[key]}")
    if path is None or not Path(path).is_file():
        return
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return  # load_config reports it
    for old, new in RENAMED_KEYS.items():
        section, _, name = old.partition(".")
        if isinstance(raw, dict) and isinstance(raw.get(section), dict) and name in raw[section]:
            raise ValueError(f"config file {path}: {old} was renamed {new}; use {new}")


@dataclass
class DataConfig:
    """Where the prepared corpus lives (``train.bin``, ``val.bin``, ``meta.json``; see ``llmlab data prepare``)."""

    dir: str = "data/tinyshakespeare-char"


@dataclass
class TrainConfig:
    """The training loop: one set of keys for every objective (``llmlab pretrain`` and ``llmlab finetune``).

    Attributes:
        batch_size: sequences (rows) per micro-batch *per process* (global batch = batch_size * world_size).
        grad_accum: micro-batches per optimizer step.
        max_iters: optimizer steps to train for (total, including steps done before a resume).
        eval_interval: evaluate every this many steps (0 = only at the end).
        eval_iters: pretraining: val batches per evaluation (the first `eval_iters` consecutive windows).
        eval_batch_size: fine-tuning: rows per evaluation batch.
        max_eval_examples: fine-tuning: evaluate on at most this many held-out examples per task (0 = all).
        log_interval: write a metrics row every this many steps (and at the first and last step).
        save_interval: save ``checkpoints/last`` every this many steps (0 = only at the end).
        save_best: also keep ``checkpoints/best`` (the lowest val loss so far).
        seed: seeds model/adapter init, data order and dropout.
        data_seed: seeds the order of the training data instead of `seed` (None = `seed`): runs with one `seed`
            and different `data_seed`s start from the same weights and see different batches (for model soups,
            `llmlab average`).
        device: auto | cpu | cuda | cuda:N (`llmlab.nn.device.resolve_device`; under torchrun each rank takes
            ``cuda:<local_rank>``).
        precision: auto | fp32 | bf16 | fp16 (auto = bf16/fp16 on CUDA, fp32 on CPU).
        compile: wrap the model in ``torch.compile``.
        distributed: auto | none | ddp | fsdp (auto = DDP when launched by torchrun with >1 process).
        tensorboard: write TensorBoard event files to ``out_dir/tb``.
        progress: show a progress bar.
        ema_decay: keep an exponential moving average of the trainable weights with this decay, e.g. 0.999
            (0 = off; warmup ``min(decay, (1+t)/(10+t))``, see `llmlab.train.ema`); saved in every checkpoint
            and written as loadable weights in ``checkpoints/<name>/ema/``.
    """

    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    eval_interval: int = 250
    eval_iters: int = 200
    eval_batch_size: int = 8
    max_eval_examples: int = 200
    log_interval: int = 10
    save_interval: int = 250
    save_best: bool = False
    seed: int = 1337
    data_seed: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    distributed: str = "auto"
    tensorboard: bool = True
    progress: bool = True
    ema_decay: float = 0.0

    @property
    def data_order_seed(self) -> int:
        """The seed of the training data order: `data_seed`, else `seed`."""
        return self.seed if self.data_seed is None else self.data_seed

    def validate(self) -> None:
        """One-line ValueError naming the first impossible ``train.*`` value (no torch needed)."""
        check_minimum("train", self, ("batch_size", "grad_accum", "max_iters", "log_interval", "eval_batch_size"), 1)
        check_minimum("train", self, ("eval_interval", "eval_iters", "max_eval_examples", "save_interval"), 0)
        check_choice("train.precision", self.precision, PRECISIONS)
        check_choice("train.distributed", self.distributed, DISTRIBUTED_MODES)
        if not (isinstance(self.ema_decay, (int, float)) and 0 <= self.ema_decay < 1):
            raise ValueError(f"train.ema_decay must be in [0, 1) (0 = no EMA, e.g. 0.999), got {self.ema_decay!r}")
        if not self.device or not isinstance(self.device, str):
            raise ValueError(f"train.device must be auto, cpu, cuda or cuda:N, got {self.device!r}")


@dataclass
class OptimConfig:
    """The optimizer: ``adamw``, ``lamb`` or any ``torch.optim`` name (SGD, Adam, RMSprop, ...).

    Attributes:
        name: optimizer name (case-insensitive).
        lr: peak learning rate.
        betas: Adam-style betas (used by optimizers that take them).
        weight_decay: decoupled weight decay on weight matrices (never on norms, biases, embeddings).
        eps: denominator epsilon (used by optimizers that take it).
        grad_clip: clip the global gradient norm to this value (0 = no clipping; the norm is still logged).
        kwargs: extra optimizer arguments, e.g. ``{momentum: 0.9}`` for SGD.
    """

    name: str = "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.1
    eps: float = 1e-8
    grad_clip: float = 1.0
    kwargs: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """One-line ValueError naming the first bad ``optim.*`` value (imports torch to check the name)."""
        from llmlab.train.optim import optimizer_class

        check_finite("optim.lr", self.lr, positive=True)
        if len(self.betas) != 2 or not all(math.isfinite(b) and 0 <= b < 1 for b in self.betas):
            raise ValueError(f"optim.betas must be two values in [0, 1) like [0.9, 0.99], got {list(self.betas)}")
        check_finite("optim.eps", self.eps)
        check_finite("optim.grad_clip", self.grad_clip)
        check_finite("optim.weight_decay", self.weight_decay)
        optimizer_class(self.name, dict(self.kwargs))


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: ``cosine`` | ``linear`` | ``constant``, each after a linear warmup.

    Attributes:
        name: schedule name.
        warmup_iters: linear warmup steps.
        min_lr: the lr reached at ``decay_iters`` (cosine/linear).
        decay_iters: where the decay ends; null = ``train.max_iters``.
    """

    name: str = "cosine"
    warmup_iters: int = 100
    min_lr: float = 1e-4
    decay_iters: int | None = None

    def validate(self, peak_lr: float) -> None:
        """One-line ValueError naming the first bad ``schedule.*`` value (`peak_lr` is ``optim.lr``)."""
        check_choice("schedule.name", self.name, SCHEDULES)
        if self.warmup_iters < 0:
            raise ValueError(f"schedule.warmup_iters must be >= 0, got {self.warmup_iters}")
        if self.decay_iters is not None and self.decay_iters < 0:
            raise ValueError(f"schedule.decay_iters must be >= 0 (or null), got {self.decay_iters}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= peak_lr):
            raise ValueError(f"schedule.min_lr ({self.min_lr}) must be between 0 and optim.lr ({peak_lr})")


@dataclass
class PretrainConfig:
    """Everything ``llmlab pretrain`` needs. See ``configs/pretrain/*.yaml`` for examples.

    Attributes:
        model: the architecture (``vocab_size`` comes from the data's ``meta.json``).
        preset: a model preset name (``llmlab.models.gpt.presets``) used as the base of ``model``.
        data: the prepared corpus.
        train: loop settings.
        optim: optimizer settings.
        schedule: lr schedule settings.
        out_dir: the run folder (config.yaml, metrics.jsonl, tb/, checkpoints/, summary.json).
        overwrite: start a new run in an earlier llmlab run folder (it is replaced; `llmlab.train.run_dir`).
        objective: always ``clm`` (next-token prediction) here; ``llmlab pretrain`` sends the encoder and
            encoder-decoder objectives (mlm, span_corruption, ...) to `llmlab.recipes.pretrain_objectives`.
    """

    model: GPTConfig = field(default_factory=lambda: GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128))
    preset: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    out_dir: str = "runs/pretrain"
    overwrite: bool = False
    objective: str = "clm"

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first impossible setting."""
        if self.objective != "clm":
            raise ValueError(
                f"objective={self.objective!r} is not decoder pretraining; run it with llmlab pretrain objective=..."
            )
        validate_training(self.train, self.optim, self.schedule)
        s, decay = self.schedule, self.schedule.decay_iters or self.train.max_iters
        if s.name != "constant" and decay < s.warmup_iters:
            raise ValueError(
                f"schedule.decay_iters ({decay}{'' if s.decay_iters else ', from train.max_iters'}) is smaller than "
                f"schedule.warmup_iters ({s.warmup_iters}); raise decay_iters or lower warmup_iters"
            )
        self.model.validate()


def validate_training(train: TrainConfig, optim: OptimConfig, schedule: ScheduleConfig) -> None:
    """The checks every recipe runs on its ``train``, ``optim`` and ``schedule`` sections (static: no device)."""
    train.validate()
    optim.validate()
    schedule.validate(optim.lr)
