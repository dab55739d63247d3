"""The pretraining recipe behind ``llmlab pretrain``: config -> data -> model -> `Trainer` -> run folder.

Usage::

    llmlab pretrain --config configs/pretrain/shakespeare-char.yaml optim.lr=3e-4 model.n_layer=2
    llmlab pretrain --config configs/pretrain/shakespeare-char.yaml --resume          # continue checkpoints/last
    torchrun --nproc_per_node=2 -m llmlab pretrain --config ... train.distributed=fsdp  # data parallel

The run folder (``out_dir``) receives ``config.yaml`` (the resolved config), ``metrics.jsonl``, ``tb/``,
``checkpoints/last/`` (and ``best/`` with ``train.save_best``) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llmlab.config import load_config, peek_key
from llmlab.train.config import (
    DataConfig,
    OptimConfig,
    PretrainConfig,
    ScheduleConfig,
    TrainConfig,
    check_renamed_keys,
)

if TYPE_CHECKING:
    import torch

    from llmlab.train.run_dir import RunDir

__all__ = [
    "DataConfig",
    "OptimConfig",
    "PretrainConfig",
    "ScheduleConfig",
    "TrainConfig",
    "load_pretrain_config",
    "pretrain",
]


def _preset_name(path: str | os.PathLike | None, overrides: list[str]) -> str | None:
    """The ``preset`` given by the last ``preset=`` override, else by the YAML file."""
    preset = peek_key(path, overrides, "preset")
    preset = yaml.safe_load(preset) if isinstance(preset, str) else preset  # an override's text, as YAML reads it
    return str(preset) if preset else None


def load_pretrain_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> PretrainConfig:
    """Load a `PretrainConfig`: defaults, then the ``preset``'s model, then the YAML, then ``key=value`` overrides.

    The preset's `GPTConfig` replaces the default ``model`` section before the YAML and the overrides are merged
    onto it (structurally, by OmegaConf), so every ``model.*`` key they do not set comes from the preset.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ValueError: an unknown or renamed key, a bad value, or an unknown preset.
    """
    overrides = list(overrides or [])
    check_renamed_keys(path, overrides)
    preset = _preset_name(path, overrides)
    base = PretrainConfig()
    if preset:
        from llmlab.models.gpt.presets import PRESETS

        base = dataclasses.replace(base, model=PRESETS.get(preset))
    return load_config(base, path, overrides)  # an instance: its values are the defaults under the YAML


def _read_meta(data_dir: Path) -> dict[str, Any]:
    meta_path = data_dir / "meta.json"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"data folder {data_dir} does not exist (data.dir); run `llmlab data prepare` first")
    if not meta_path.is_file():
        raise FileNotFoundError(f"data folder {data_dir} has no meta.json; run `llmlab data prepare` first")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{meta_path} is not valid JSON ({e.msg}); re-run `llmlab data prepare`") from None
    if not isinstance(meta, dict) or "vocab_size" not in meta:
        raise ValueError(f"{meta_path} has no vocab_size; re-run `llmlab data prepare`")
    return meta


def _identity(cfg: PretrainConfig) -> dict[str, Any]:
    """What a pretraining checkpoint must have been made from to be resumed with `cfg`: the architecture."""
    return {"model": dataclasses.asdict(cfg.model)}


def pretrain(cfg: PretrainConfig, resume: bool = False, run: RunDir | None = None) -> dict[str, Any]:
    """Run pretraining as configured; returns the summary (also written to ``out_dir/summary.json``).

    Works as a single process or under ``torchrun`` (``train.distributed``: ddp / fsdp). The whole config,
    the data and the run folder are checked before anything is written (`llmlab.train.run_dir`).

    Args:
        cfg: the config.
        resume: continue ``out_dir/checkpoints/last``.
        run: a run folder the caller already opened and created (quickstart); None = open ``cfg.out_dir``.

    Raises:
        FileNotFoundError: missing data (run ``llmlab data prepare``) or, with ``resume``, no checkpoint.
        ValueError: inconsistent settings (e.g. block_size longer than the val split), an unavailable device,
            or an ``out_dir`` that may not be used (one line naming it).
    """
    from llmlab.data.loader import RandomWindowLoader, SequentialLoader, TokenDataset
    from llmlab.models.gpt import GPT
    from llmlab.train.distributed import barrier, cleanup, init_distributed
    from llmlab.train.logging import format_summary
    from llmlab.train.precision import check_runtime, rank_device
    from llmlab.train.pretrain_loop import PretrainTrainer
    from llmlab.train.run_dir import open_run
    from llmlab.train.trainer import seed_everything

    tc = cfg.train
    cfg.validate()
    data_dir = Path(cfg.data.dir)
    meta = _read_meta(data_dir)
    cfg.model.vocab_size = int(meta["vocab_size"])
    cfg.model.validate()
    block = cfg.model.block_size
    train_ds, val_ds = TokenDataset(data_dir, "train"), TokenDataset(data_dir, "val")
    for split, ds in (("train", train_ds), ("val", val_ds)):
        if len(ds.tokens) <= block:
            raise ValueError(
                f"model.block_size={block} is not smaller than the {split} split ({len(ds.tokens)} tokens in "
                f"{data_dir}); lower model.block_size or prepare more data"
            )
    device, _ = check_runtime(tc.device, tc.precision, tc.distributed)
    if run is None:
        run = open_run(
            cfg.out_dir, "pretrain", resume=resume, overwrite=cfg.overwrite, max_iters=tc.max_iters,
            identity=_identity(cfg), sources=[data_dir],
        )  # fmt: skip
    ctx = init_distributed(tc.distributed, device.type)
    try:
        device = rank_device(tc.device, ctx.local_rank)
        seed_everything(tc.seed)  # identical model init on every rank
        model = GPT.from_pretrained(run.last) if run.resume_state is not None else GPT(cfg.model)
        train_loader = RandomWindowLoader(
            train_ds, tc.batch_size, block, seed=tc.data_order_seed, rank=ctx.rank, world_size=ctx.world_size
        )

        def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            """This rank's rows of the first ``eval_iters`` global val batches (consecutive windows)."""
            r, w = ctx.rank, ctx.world_size
            for x, y in SequentialLoader(val_ds, tc.batch_size * w, block, max_batches=tc.eval_iters):
                if len(x) >= w:  # a partial last batch too small to give every rank a row is skipped
                    yield x[r::w], y[r::w]

        barrier(ctx)  # every rank has checked out_dir before rank 0 changes it
        if ctx.is_main:
            run.create(cfg)
        barrier(ctx)
        tokenizer = train_ds.tokenizer_path
        with run.guard(enabled=ctx.is_main):
            trainer = PretrainTrainer(
                model,
                cfg,
                train_loader,
                val_batches if tc.eval_iters > 0 else None,
                run.path,
                ctx=ctx,
                device=device,
                tokenizer_file=tokenizer if tokenizer.is_file() else None,
                resume_state=run.resume_state,
                run_info=_identity(cfg),
            )
            summary = trainer.fit()
        if ctx.is_main:
            run.write_summary(summary)
            print(format_summary(summary), flush=True)
        barrier(ctx)  # every rank's last collective is done before the process group goes away
        return summary
    finally:
        cleanup(ctx)
