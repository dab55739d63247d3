"""The config of ``llmlab distill``: `DistillConfig` (teacher, student, data, ``kd:``, ``sequence:`` and the shared
``train``/``optim``/``schedule`` sections of `llmlab.train.config`) and its static validation (no torch, no files
written; `llmlab.recipes.distill` checks the models and the data before it writes anything).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from llmlab.config import load_config
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig, check_renamed_keys, validate_training

DISTILL_DISTRIBUTED = ("auto", "none")  # one process (DDP/FSDP not wired into the recipe yet)


@dataclass
class StudentConfig:
    """The student: a fresh model of a family (``preset`` and/or ``model`` keys) or an existing ``checkpoint``.

    Attributes:
        checkpoint: start from this model (llmlab/HF folder, run folder or .gguf); None = a fresh model.
        family: the family of a fresh student (``llama``, ``gpt``).
        preset: a preset of that family as the base of ``model`` (e.g. ``llama-tiny``); None = the family's defaults.
        model: config fields of the fresh student (e.g. ``{hidden_size: 256, num_hidden_layers: 6}``);
            ``vocab_size`` defaults to the teacher's.
    """

    checkpoint: str | None = None
    family: str = "llama"
    preset: str | None = None
    model: dict[str, Any] = field(default_factory=dict)


@dataclass
class DistillDataConfig:
    """The corpus: a folder made by ``llmlab data prepare --tokenizer <the teacher's tokenizer.json>``.

    Attributes:
        dir: the prepared folder (``train.bin``, ``val.bin``, ``meta.json``, ``tokenizer.json``).
        block_size: tokens per training window.
    """

    dir: str = "data/distill"
    block_size: int = 128


@dataclass
class KDConfig:
    """The distillation loss (`llmlab.compress.distill`).

    Attributes:
        temperature: T, softening both distributions; the KL is scaled by T^2 (Hinton et al. 2015).
        alpha: weight of the KD term; 1 - alpha weighs the hard-label CE (0 = plain training, no teacher).
        hidden_weight: weight of the hidden-state MSE (projection when widths differ); 0 = off.
        hidden_layers: student layers paired with teacher layers (uniform mapping); None = all.
        attention_weight: weight of the attention-map MSE; 0 = off.
        attention_layers: student layers whose attention maps are matched (default the last).
        cache_topk: 0 = the teacher runs on the fly; k > 0 = its top-k logits are cached to disk first
            (fp16 values + int32 indices) and the KL is taken over those k ids, renormalised.
        cache_dir: where the cache lives (None = ``<out_dir>/teacher_cache``); an existing complete cache made
            for the same batches is reused (e.g. by several students).
    """

    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    hidden_layers: list[int] | None = None
    attention_weight: float = 0.0
    attention_layers: list[int] = field(default_factory=lambda: [-1])
    cache_topk: int = 0
    cache_dir: str | None = None


@dataclass
class SequenceKDConfig:
    """Sequence-level KD (Kim & Rush 2016, https://arxiv.org/abs/1606.07947): train on the teacher's generations.

    Attributes:
        samples: how many teacher generations to make and train on instead of the corpus's train split
            (0 = off). Prompts are windows of the train split; the val split stays the held-out real text.
        prompt_tokens: tokens of each prompt.
        new_tokens: tokens the teacher generates per prompt (greedy decoding, the mode approximation).
        batch_size: prompts per generation batch.
    """

    samples: int = 0
    prompt_tokens: int = 16
    new_tokens: int = 128
    batch_size: int = 16


def student_model_config(student: StudentConfig, vocab_size: int | None) -> Any:
    """The config of a fresh student: the family's ``preset`` (or defaults) with ``student.model`` applied and
    ``vocab_size`` (the teacher's) unless ``student.model`` sets it. Raises a one-line ValueError for an unknown
    family, preset or field."""
    from llmlab.models.registry import get_family, replace_checked

    family = get_family(student.family)
    fields = {**({"vocab_size": vocab_size} if vocab_size is not None else {}), **dict(student.model)}
    if student.preset:
        return family.presets.get(student.preset, **fields)
    return replace_checked(family.config_class(), fields, kind=f"student.model ({student.family})")


def distill_train_defaults() -> TrainConfig:
    """`TrainConfig` with distillation's defaults."""
    return TrainConfig(batch_size=8, max_iters=500, eval_interval=100, eval_iters=20, save_interval=0)


@dataclass
class DistillConfig:
    """Everything ``llmlab distill`` needs.

    Attributes:
        teacher: the teacher model (any path ``llmlab generate --checkpoint`` takes); None = SmolLM2-135M-Instruct.
        student: the student to train.
        data: the corpus.
        kd: the loss.
        sequence: sequence-level KD.
        train / optim / schedule: the loop (shared with pretrain/finetune).
        out_dir: the run folder (loads with ``llmlab generate --checkpoint <out_dir>``).
        overwrite: replace an earlier llmlab run folder at ``out_dir``.
    """

    teacher: str | None = None
    student: StudentConfig = field(default_factory=StudentConfig)
    data: DistillDataConfig = field(default_factory=DistillDataConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    sequence: SequenceKDConfig = field(default_factory=SequenceKDConfig)
    train: TrainConfig = field(default_factory=distill_train_defaults)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.1))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=20, min_lr=1e-4))
    out_dir: str = "runs/distill"
    overwrite: bool = False

    def validate(self) -> None:
        """One-line ValueError naming the first impossible setting (static: no model or file is read)."""
        from llmlab.compress.distill import check_kd_settings

        check_kd_settings(self.kd.temperature, self.kd.alpha)
        for key in ("hidden_weight", "attention_weight"):
            value = getattr(self.kd, key)
            if not (isinstance(value, (int, float)) and value >= 0):
                raise ValueError(f"kd.{key} must be a number >= 0 (0 = off), got {value!r}")
        if not isinstance(self.kd.cache_topk, int) or self.kd.cache_topk < 0:
            raise ValueError(f"kd.cache_topk must be 0 (teacher on the fly) or k > 0, got {self.kd.cache_topk!r}")
        if self.data.block_size < 2:
            raise ValueError(f"data.block_size must be >= 2, got {self.data.block_size}")
        if self.student.checkpoint and (self.student.preset or self.student.model):
            raise ValueError("set either student.checkpoint or student.preset/student.model, not both")
        if not self.student.checkpoint:
            student_model_config(self.student, None)  # an unknown family or field: one line naming it
        s = self.sequence
        for key in ("samples", "prompt_tokens", "new_tokens", "batch_size"):
            if getattr(s, key) < (0 if key == "samples" else 1):
                raise ValueError(f"sequence.{key} must be >= {0 if key == 'samples' else 1}, got {getattr(s, key)}")
        if s.samples and self.kd.cache_topk:
            raise ValueError(
                "sequence-level KD trains on fresh teacher text: set kd.cache_topk=0 with sequence.samples"
            )
        validate_training(self.train, self.optim, self.schedule)
        if self.train.distributed not in DISTILL_DISTRIBUTED:
            raise ValueError(
                f"train.distributed={self.train.distributed} is not supported by distill yet (one process); "
                "set train.distributed=none"
            )
        if self.train.compile and (self.kd.hidden_weight or self.kd.attention_weight):
            raise ValueError(
                "train.compile does not work with hidden/attention losses (hooks); set train.compile=false"
            )


def load_distill_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> DistillConfig:
    """Defaults, then the YAML, then ``key=value`` overrides; validated (one-line ValueError naming the key)."""
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    return load_config(DistillConfig, path, overrides)
