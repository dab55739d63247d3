"""The config of ``llmlab finetune task=seq2seq``: `Seq2SeqFinetuneConfig` (a T5/BART base folder OR a
from-scratch `model`, the tokenizer, {"source","target"} JSONL data, the shared ``train``/``optim``/``schedule``
sections of `llmlab.train.config`, and ``eval``: decoding settings of the test-set ROUGE-L/BLEU/chrF).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from llmlab.config import load_config
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig, check_renamed_keys, validate_training

SEQ2SEQ_FAMILIES = ("t5", "bart")
SEQ2SEQ_METHODS = ("full",)
TOKENIZER_KINDS = ("unigram", "bpe", "wordpiece", "char")
METRIC_LANGS = ("en", "zh")


@dataclass
class Seq2SeqModelConfig:
    """A model trained from scratch (when `base` is not set).

    Attributes:
        family: 't5' or 'bart' (None: fine-tune `base` instead).
        preset: a preset of the family (`llmlab.models.t5.PRESETS`, `llmlab.models.bart.PRESETS`).
        overrides: config fields over the preset (e.g. {n_layer: 2, dropout: 0.1}); vocab_size and the special
            token ids always come from the tokenizer.
    """

    family: str | None = None
    preset: str = "t5-mini"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Seq2SeqTokenizerConfig:
    """The tokenizer.

    Attributes:
        path: a tokenizer.json (or a folder holding one); None = the base's own, or (from scratch) train one on
            the training sources and targets with `llmlab.tokenizers.train` (saved in the run folder).
        kind: the kind to train ('unigram' is SentencePiece's, as T5's).
        vocab_size: the vocabulary to train, special tokens included.
    """

    path: str | None = None
    kind: str = "unigram"
    vocab_size: int = 4096


@dataclass
class Seq2SeqDataConfig:
    """JSONL files of {"source": ..., "target": ...} records.

    Attributes:
        train / val / test: the splits (val: `val_loss` during training; test: the final metrics).
        max_source_length / max_target_length: tokens kept per side, EOS included.
        source_prefix: text put before every source (T5's task prefixes, e.g. "summarize: ").
        max_train_examples: use only the first N training records (0 = all).
    """

    train: str | None = None
    val: str | None = None
    test: str | None = None
    max_source_length: int = 256
    max_target_length: int = 64
    source_prefix: str = ""
    max_train_examples: int = 0


@dataclass
class Seq2SeqEvalConfig:
    """The final generation metrics on `data.test` (ROUGE-L, BLEU, chrF; greedy and beam).

    Attributes:
        max_examples: decode at most this many test examples (0 = all).
        max_new_tokens: target tokens per output.
        num_beams: beams of the beam-search pass (1 = greedy only).
        length_penalty: beam score exponent on the length.
        lang: 'en' or 'zh' (tokenisation of BLEU/ROUGE).
        samples: how many (source, reference, greedy, beam) examples go into summary.json.
    """

    max_examples: int = 200
    max_new_tokens: int = 64
    num_beams: int = 4
    length_penalty: float = 1.0
    lang: str = "en"
    samples: int = 8


def seq2seq_train_defaults() -> TrainConfig:
    """`TrainConfig` with fine-tuning's defaults (checkpoints only at the end)."""
    return TrainConfig(batch_size=16, max_iters=500, eval_interval=100, save_interval=0)


@dataclass
class Seq2SeqFinetuneConfig:
    """Everything `llmlab finetune task=seq2seq` needs (see `configs/finetune/seq2seq-*.yaml`).

    Attributes:
        task: always 'seq2seq' (the dispatch key of `llmlab finetune`).
        base: a llmlab or HF T5/BART folder (or a finetune run's `model/`) to fine-tune, or None with `model`.
        method: 'full' (every weight trains).
        model: a from-scratch model (`model.family` set and `base` None).
        tokenizer: the tokenizer (see `Seq2SeqTokenizerConfig`).
        data / train / optim / schedule / eval: the sections.
        out_dir / overwrite / resume: the run folder policy of `llmlab.train.run_dir`.
    """

    task: str = "seq2seq"
    base: str | None = None
    method: str = "full"
    model: Seq2SeqModelConfig = field(default_factory=Seq2SeqModelConfig)
    tokenizer: Seq2SeqTokenizerConfig = field(default_factory=Seq2SeqTokenizerConfig)
    data: Seq2SeqDataConfig = field(default_factory=Seq2SeqDataConfig)
    train: TrainConfig = field(default_factory=seq2seq_train_defaults)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-3, weight_decay=0.01, betas=[0.9, 0.999]))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=50, min_lr=0.0))
    eval: Seq2SeqEvalConfig = field(default_factory=Seq2SeqEvalConfig)
    out_dir: str = "runs/finetune-seq2seq"
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError for impossible settings."""
        if self.task != "seq2seq":
            raise ValueError(f"task={self.task!r} is not the seq2seq runner's; use task=seq2seq")
        if self.method not in SEQ2SEQ_METHODS:
            raise ValueError(f"method {self.method!r} is not available for task=seq2seq; use: {', '.join(SEQ2SEQ_METHODS)}")
        if (self.base is None) == (self.model.family is None):
            raise ValueError("set exactly one of base=<T5/BART folder> and model.family=t5|bart (train from scratch)")
        if self.model.family is not None and self.model.family not in SEQ2SEQ_FAMILIES:
            raise ValueError(f"model.family must be one of {', '.join(SEQ2SEQ_FAMILIES)}, got {self.model.family!r}")
        if self.tokenizer.kind not in TOKENIZER_KINDS:
            raise ValueError(f"tokenizer.kind must be one of {', '.join(TOKENIZER_KINDS)}, got {self.tokenizer.kind!r}")
        d, e = self.data, self.eval
        if not d.train:
            raise ValueError("no training data: set data.train=<file.jsonl> of {\"source\", \"target\"} records")
        if d.max_source_length < 2 or d.max_target_length < 2:
            raise ValueError("data.max_source_length and data.max_target_length must be >= 2 (EOS is one token)")
        if d.max_train_examples < 0 or e.max_examples < 0 or e.samples < 0:
            raise ValueError("data.max_train_examples, eval.max_examples and eval.samples must be >= 0")
        if e.num_beams < 1 or e.max_new_tokens < 1:
            raise ValueError("eval.num_beams and eval.max_new_tokens must be >= 1")
        if e.lang not in METRIC_LANGS:
            raise ValueError(f"eval.lang must be one of {', '.join(METRIC_LANGS)}, got {e.lang!r}")
        validate_training(self.train, self.optim, self.schedule)
        if self.train.distributed not in ("auto", "none"):
            raise ValueError("task=seq2seq runs in one process; set train.distributed=none")
        if self.train.compile:
            raise ValueError("train.compile is not supported for task=seq2seq; set train.compile=false")


def load_seq2seq_config(
    path: str | os.PathLike | None, overrides: list[str] | None = None, method: str | None = None
) -> Seq2SeqFinetuneConfig:
    """Defaults, then the YAML, then `key=value` overrides; `method` (the --method option) wins over all."""
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    if method is not None:
        overrides.append(f"method={method}")
    return load_config(Seq2SeqFinetuneConfig, path, overrides)
