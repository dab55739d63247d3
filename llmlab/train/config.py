"""`PretrainConfig`: the dataclass tree behind ``llmlab pretrain --config cfg.yaml key=value ...``.

No torch import here: the CLI can load and check a config cheaply.

Sections: ``model`` (a `GPTConfig`; ``preset`` fills it first, explicit ``model.*`` keys win), ``data``,
``train`` (loop, precision, devices, logging), ``optim`` (optimizer + clipping), ``schedule`` (lr schedule),
``out_dir``. ``model.vocab_size`` is always taken from the data folder's ``meta.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from llmlab.models.gpt.config import GPTConfig


@dataclass
class DataConfig:
    """Where the prepared corpus lives (``train.bin``, ``val.bin``, ``meta.json``; see ``llmlab data prepare``)."""

    dir: str = "data/tinyshakespeare-char"


@dataclass
class TrainConfig:
    """The training loop.

    Attributes:
        batch_size: sequences per micro-batch *per process* (global batch = batch_size * world_size).
        grad_accum: micro-batches per optimizer step (tokens/step = batch_size * block_size * grad_accum * world).
        max_iters: optimizer steps to train for (total, including steps done before a resume).
        eval_interval: evaluate the val loss every this many steps (0 = only at the end).
        eval_iters: val batches per evaluation (the first `eval_iters` consecutive windows of ``val.bin``).
        log_interval: write a metrics row every this many steps (and at the first and last step).
        ckpt_interval: save ``checkpoints/last`` every this many steps (0 = only at the end).
        save_best: also keep ``checkpoints/best`` (the lowest val loss so far).
        seed: seeds model init, data order and dropout.
        device: auto | cpu | cuda.
        precision: auto | fp32 | bf16 | fp16 (auto = bf16/fp16 on CUDA, fp32 on CPU).
        compile: wrap the model in ``torch.compile``.
        distributed: auto | none | ddp | fsdp (auto = DDP when launched by torchrun with >1 process).
        tensorboard: write TensorBoard event files to ``out_dir/tb``.
        progress: show a progress bar.
    """

    batch_size: int = 12
    grad_accum: int = 1
    max_iters: int = 2000
    eval_interval: int = 250
    eval_iters: int = 200
    log_interval: int = 10
    ckpt_interval: int = 250
    save_best: bool = False
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    distributed: str = "auto"
    tensorboard: bool = True
    progress: bool = True


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
        overwrite: start a new run even if ``out_dir`` already holds a checkpoint (it is replaced).
    """

    model: GPTConfig = field(default_factory=lambda: GPTConfig(block_size=64, n_layer=4, n_head=4, n_embd=128))
    preset: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    out_dir: str = "runs/pretrain"
    overwrite: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError for impossible settings."""
        t, o, s = self.train, self.optim, self.schedule
        for name in ("batch_size", "grad_accum", "max_iters", "log_interval"):
            if getattr(t, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(t, name)}")
        for name in ("eval_interval", "eval_iters", "ckpt_interval"):
            if getattr(t, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(t, name)}")
        if o.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {o.lr}")
        if len(o.betas) != 2:
            raise ValueError(f"optim.betas must have two values like [0.9, 0.99], got {list(o.betas)}")
        if o.grad_clip < 0 or o.weight_decay < 0:
            raise ValueError("optim.grad_clip and optim.weight_decay must be >= 0")
        if s.min_lr < 0 or s.min_lr > o.lr:
            raise ValueError(f"schedule.min_lr ({s.min_lr}) must be between 0 and optim.lr ({o.lr})")
        self.model.validate()
