"""The distillation recipe behind ``llmlab distill``: config -> teacher + student + corpus -> `DistillTrainer`.

Usage::

    llmlab data prepare --source shakespeare --tokenizer <SmolLM2 tokenizer.json> --out data/shakespeare-smollm2
    llmlab distill data.dir=data/shakespeare-smollm2 student.model.hidden_size=256 kd.temperature=2 kd.alpha=0.5
    llmlab distill --config configs/distill/smollm2-to-small.yaml kd.cache_topk=64     # cached top-k logits
    llmlab distill ... sequence.samples=512 kd.alpha=0                                 # sequence-level KD
    llmlab generate --checkpoint runs/distill "To be"                                  # the trained student

The run folder (``out_dir``) is pretraining's: ``config.yaml``, ``metrics.jsonl``, ``tb/``, ``checkpoints/last/``
(the student: ``model.safetensors`` + ``model_config.json`` + ``tokenizer.json``), ``summary.json``; plus
``teacher_cache/`` (with ``kd.cache_topk``) or ``teacher_data/`` (the teacher's generations, sequence-level KD).
Every input (config, data, both models, their vocabularies and contexts, the output folder) is checked before
anything is written.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmlab.recipes.distill_config import DistillConfig, load_distill_config, student_model_config

if TYPE_CHECKING:
    import torch
    from torch import nn

    from llmlab.compress.distill import TopKCache
    from llmlab.data.loader import TokenDataset

__all__ = ["DistillConfig", "distill", "load_distill_config"]


def _read_meta(data_dir: Path) -> dict[str, Any]:
    if not (data_dir / "meta.json").is_file():
        raise FileNotFoundError(
            f"data.dir {data_dir} has no meta.json; run `llmlab data prepare --tokenizer <the teacher's "
            f"tokenizer.json> --out {data_dir}` first"
        )
    return json.loads((data_dir / "meta.json").read_text(encoding="utf-8"))


def _identity(cfg: DistillConfig) -> dict[str, Any]:
    """What a checkpoint must have been made from to be resumed with `cfg`."""
    return {
        "teacher": cfg.teacher,
        "student": dataclasses.asdict(cfg.student),
        "kd": dataclasses.asdict(cfg.kd),
        "sequence": dataclasses.asdict(cfg.sequence),
        "block_size": cfg.data.block_size,
    }


def build_student(cfg: DistillConfig, teacher_vocab: int, device: str) -> nn.Module:
    """A fresh student of ``student.family`` (preset + ``student.model``; vocab_size defaults to the teacher's),
    or the model at ``student.checkpoint``."""
    from llmlab.models.registry import get_family

    if cfg.student.checkpoint:
        from llmlab.hub import load_for_inference

        return load_for_inference(cfg.student.checkpoint, device, require_tokenizer=False).model
    config = student_model_config(cfg.student, teacher_vocab)
    return get_family(cfg.student.family).model_class(config)


def _check_models(cfg: DistillConfig, teacher: nn.Module, student: nn.Module, meta: dict[str, Any]) -> None:
    """One-line ValueErrors: vocabularies that differ, a corpus with ids past them, a block longer than a context."""
    from llmlab.compress.distill import check_vocab_compatible
    from llmlab.nn.virtual import context_length

    t_vocab, s_vocab = teacher.lm_head.weight.shape[0], student.lm_head.weight.shape[0]
    check_vocab_compatible(s_vocab, t_vocab)
    if int(meta["vocab_size"]) > t_vocab:
        raise ValueError(
            f"data.dir {cfg.data.dir} was tokenized with {meta['vocab_size']} ids but the teacher has {t_vocab}; "
            "prepare the corpus with the teacher's tokenizer (llmlab data prepare --tokenizer ...)"
        )
    block = cfg.data.block_size + (cfg.sequence.prompt_tokens + cfg.sequence.new_tokens if cfg.sequence.samples else 0)
    for name, model in (("teacher", teacher), ("student", student)):
        if cfg.data.block_size > context_length(model) or (cfg.sequence.samples and block > context_length(model)):
            raise ValueError(
                f"data.block_size={cfg.data.block_size} (or the sequence-KD length) exceeds the {name}'s context "
                f"of {context_length(model)} tokens; lower data.block_size"
            )


class _Tokens:
    """A token stream in memory that quacks like `TokenDataset` for the loaders (sequence-level KD data)."""

    def __init__(self, tokens: np.ndarray, split: str) -> None:
        self.tokens, self.split = tokens, split

    def __len__(self) -> int:
        return len(self.tokens)


def teacher_generations(
    cfg: DistillConfig, teacher: nn.Module, train_ds: TokenDataset, eos_id: int | None, folder: Path
) -> np.ndarray:
    """Sequence-level KD data: greedy teacher continuations of ``sequence.samples`` prompts (windows of the train
    split, seeded), concatenated (EOS between them when the tokenizer has one) and saved as ``folder/train.bin``
    (reused when present and complete)."""
    import torch

    from llmlab.config.sampling import SamplingConfig
    from llmlab.generate import generate_batch
    from llmlab.io import atomic_write, atomic_write_json

    s, out = cfg.sequence, folder / "train.bin"
    if out.is_file() and (folder / "done.json").is_file():
        return np.fromfile(out, dtype=np.int32)
    rng = np.random.default_rng(cfg.train.data_order_seed)
    starts = rng.integers(0, len(train_ds.tokens) - s.prompt_tokens, size=s.samples)
    pieces: list[np.ndarray] = []
    device = next(teacher.parameters()).device
    for i in range(0, s.samples, s.batch_size):
        prompts = [torch.from_numpy(np.asarray(train_ds.tokens[a : a + s.prompt_tokens]).astype(np.int64)).to(device)
                   for a in starts[i : i + s.batch_size]]  # fmt: skip
        rows = generate_batch(teacher, prompts, s.new_tokens, sampling=SamplingConfig(temperature=0.0),
                              eos_token_id=eos_id)  # fmt: skip
        for row in rows:
            pieces.append(row.cpu().numpy().astype(np.int32))
            if eos_id is not None and int(row[-1]) != eos_id:
                pieces.append(np.array([eos_id], dtype=np.int32))
    tokens = np.concatenate(pieces)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda tmp: tokens.tofile(tmp))
    atomic_write_json(folder / "done.json", {"samples": s.samples, "tokens": int(len(tokens))})
    return tokens


def _cache_batches(trainer_loader: Any, teacher: nn.Module, k: int, n: int, device: str) -> Iterator[tuple]:
    """(inputs, top-k values, top-k indices) of the first `n` training batches, the teacher run batch by batch."""
    import torch

    from llmlab.compress.distill import top_k_logits

    for _ in range(n):
        x, _y = trainer_loader.next_batch()
        with torch.no_grad():
            logits = teacher(x.to(device)).logits  # (B, T, V)
        values, indices = top_k_logits(logits, k)
        yield x, values, indices


def teacher_cache(cfg: DistillConfig, teacher: nn.Module, make_loader: Any, folder: Path, device: str) -> TopKCache:
    """The top-k cache of every training batch of the run (reused when `folder` already holds a complete one
    made for as many batches and the same k; batches are checked against it as they are read)."""
    from llmlab.compress.distill import CACHE_META, TopKCache

    n = cfg.train.max_iters * cfg.train.grad_accum
    if (folder / CACHE_META).is_file():
        cache = TopKCache(folder)
        if cache.k == cfg.kd.cache_topk and cache.n_batches >= n:
            return cache
    vocab = int(teacher.lm_head.weight.shape[0])
    batches = _cache_batches(make_loader(), teacher, cfg.kd.cache_topk, n, device)
    info = {"teacher": cfg.teacher, "block_size": cfg.data.block_size, "batch_size": cfg.train.batch_size}
    return TopKCache.write(folder, batches, k=cfg.kd.cache_topk, vocab_size=vocab, info=info)


def _prepare(cfg: DistillConfig, resume: bool) -> tuple[Any, ...]:
    """Everything checked and loaded, nothing written: (run, teacher, tokenizer, student, meta, datasets)."""
    from llmlab.data.loader import TokenDataset
    from llmlab.hub import load_for_inference
    from llmlab.models import load_model
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import open_run

    cfg.validate()
    data_dir = Path(cfg.data.dir)
    meta = _read_meta(data_dir)
    train_ds, val_ds = TokenDataset(data_dir, "train"), TokenDataset(data_dir, "val")
    for split, ds in (("train", train_ds), ("val", val_ds)):
        if len(ds.tokens) <= cfg.data.block_size:
            raise ValueError(
                f"data.block_size={cfg.data.block_size} is not smaller than the {split} split ({len(ds.tokens)} "
                f"tokens in {data_dir}); lower data.block_size or prepare more data"
            )
    device, _ = check_runtime(cfg.train.device, cfg.train.precision, cfg.train.distributed)
    sources = [data_dir] + [Path(p) for p in (cfg.teacher, cfg.student.checkpoint) if p]
    run = open_run(
        cfg.out_dir, "distill", resume=resume, overwrite=cfg.overwrite, max_iters=cfg.train.max_iters,
        identity=_identity(cfg), sources=sources,
    )  # fmt: skip
    teacher_loaded = load_for_inference(cfg.teacher, str(device), require_tokenizer=False)
    teacher = teacher_loaded.model
    from llmlab.train.trainer import seed_everything

    seed_everything(cfg.train.seed)  # the student's init depends on train.seed only (same start with and without KD)
    student = build_student(cfg, int(teacher.lm_head.weight.shape[0]), str(device))
    _check_models(cfg, teacher, student, meta)
    if run.resume_state is not None:
        student = load_model(run.last, device="cpu")
    return run, teacher, teacher_loaded.tokenizer, student, meta, train_ds, val_ds, device


def distill(cfg: DistillConfig, resume: bool = False) -> dict[str, Any]:
    """Distil ``cfg.teacher`` into the student as configured; returns the summary (also ``out_dir/summary.json``).

    Raises:
        FileNotFoundError: a missing data folder, teacher or student checkpoint, or (``resume``) no checkpoint.
        ValueError: a bad setting, vocabularies that differ (both sizes named), a block longer than a model's
            context, or an ``out_dir`` that may not be used (one line naming it).
    """
    from llmlab.data.loader import RandomWindowLoader, SequentialLoader
    from llmlab.train.distill_loop import DistillTrainer, KDSettings
    from llmlab.train.logging import format_summary
    from llmlab.train.trainer import seed_everything

    tc, kd = cfg.train, cfg.kd
    run, teacher, teacher_tok, student, _meta, train_ds, val_ds, device = _prepare(cfg, resume)
    run.create(cfg)
    block = cfg.data.block_size
    with run.guard():
        if cfg.sequence.samples:
            eos = teacher_tok.eos_id if teacher_tok is not None else None
            tokens = teacher_generations(cfg, teacher, train_ds, eos, run.path / "teacher_data")
            train_source: Any = _Tokens(tokens, "teacher generations")
        else:
            train_source = train_ds

        def make_loader() -> RandomWindowLoader:
            return RandomWindowLoader(train_source, tc.batch_size, block, seed=tc.data_order_seed)

        cache = None
        if kd.cache_topk:
            folder = Path(kd.cache_dir) if kd.cache_dir else run.path / "teacher_cache"
            cache = teacher_cache(cfg, teacher, make_loader, folder, str(device))

        def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            yield from SequentialLoader(val_ds, tc.batch_size, block, max_batches=tc.eval_iters)

        needs_teacher = (kd.alpha > 0 and cache is None) or kd.hidden_weight > 0 or kd.attention_weight > 0
        seed_everything(tc.seed)
        tokenizer = train_ds.tokenizer_path if train_ds.tokenizer_path.is_file() else None
        settings = KDSettings(kd.temperature, kd.alpha, kd.hidden_weight, kd.attention_weight,
                              kd.hidden_layers, list(kd.attention_layers))  # fmt: skip
        trainer = DistillTrainer(
            student, teacher if needs_teacher else None,
            settings, tc, cfg.optim, cfg.schedule, make_loader(), val_batches if tc.eval_iters > 0 else None,
            run.path, cache=cache, tokenizer_file=tokenizer,
            device=device, resume_state=run.resume_state, run_info=_identity(cfg),
        )  # fmt: skip
        summary = trainer.fit()
    run.write_summary(summary)
    print(format_summary(summary, title="distillation"), flush=True)
    return summary
