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
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from llmlab.config import load_config, save_config

if TYPE_CHECKING:
    import torch

from llmlab.train.config import DataConfig, OptimConfig, PretrainConfig, ScheduleConfig, TrainConfig

__all__ = [
    "DataConfig",
    "OptimConfig",
    "PretrainConfig",
    "ScheduleConfig",
    "TrainConfig",
    "load_pretrain_config",
    "pretrain",
]


def _yaml_value(value: Any) -> str:
    """A dotted-override value that OmegaConf parses back to ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def load_pretrain_config(path: str | os.PathLike | None, overrides: list[str] | None = None) -> PretrainConfig:
    """Load a `PretrainConfig`: defaults, then the ``preset``'s model, then the YAML, then ``key=value`` overrides.

    A ``preset`` (given in the YAML or as ``preset=<name>``) fills every ``model.*`` key that the YAML and the
    overrides do not set explicitly.

    Raises:
        FileNotFoundError: the YAML file does not exist.
        ValueError: an unknown key, a bad value, or an unknown preset.
    """
    overrides = list(overrides or [])
    raw: dict[str, Any] = {}
    if path is not None and Path(path).is_file():
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
            raw = loaded if isinstance(loaded, dict) else {}
        except yaml.YAMLError:
            raw = {}  # load_config reports the YAML error
    preset = raw.get("preset")
    for item in overrides:
        key, _, value = item.partition("=")
        if key.strip() == "preset":
            preset = yaml.safe_load(value) if value.strip() else None
    preset_overrides: list[str] = []
    if preset:
        from llmlab.models.gpt.presets import PRESETS

        base = PRESETS.get(str(preset))
        yaml_model = raw.get("model") if isinstance(raw.get("model"), dict) else {}
        explicit = {item.partition("=")[0].strip() for item in overrides}
        for f in dataclasses.fields(base):
            if f.name not in yaml_model and f"model.{f.name}" not in explicit:
                preset_overrides.append(f"model.{f.name}={_yaml_value(getattr(base, f.name))}")
    return load_config(PretrainConfig, path, preset_overrides + overrides)


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


def _config_differences(a: Any, b: Any) -> list[str]:
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    return [f"{k}: {da[k]} (checkpoint) vs {db[k]} (config)" for k in da if da[k] != db.get(k)]


def _prepare_out_dir(out_dir: Path, resume: bool, overwrite: bool, is_main: bool) -> Path:
    """Check the run folder against --resume / overwrite; returns the checkpoint folder to resume from."""
    from llmlab.train.checkpoint import find_checkpoint

    last = out_dir / "checkpoints" / "last"
    has_ckpt = find_checkpoint(last, repair=is_main) is not None  # repairs what a kill during a save left
    if resume and not has_ckpt:
        raise FileNotFoundError(
            f"--resume: no checkpoint at {last} (out_dir={out_dir}); run without --resume to start a new run"
        )
    if not resume and has_ckpt:
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} already holds a checkpoint; pass --resume to continue it, overwrite=true to start over, "
                "or choose another out_dir"
            )
        if is_main:  # start over: remove only what a run writes
            for sub in ("checkpoints", "tb"):
                shutil.rmtree(out_dir / sub, ignore_errors=True)
            for name in ("metrics.jsonl", "summary.json"):
                (out_dir / name).unlink(missing_ok=True)
    return last


def pretrain(cfg: PretrainConfig, resume: bool = False) -> dict[str, Any]:
    """Run pretraining as configured; returns the summary (also written to ``out_dir/summary.json``).

    Works as a single process or under ``torchrun`` (``train.distributed``: ddp / fsdp).

    Raises:
        FileNotFoundError: missing data (run ``llmlab data prepare``) or, with ``resume``, no checkpoint.
        FileExistsError: a fresh run into a folder that already holds a checkpoint (use resume / overwrite).
        ValueError: inconsistent settings (e.g. block_size longer than the val split).
    """
    from llmlab.data.loader import RandomWindowLoader, SequentialLoader, TokenDataset
    from llmlab.models.gpt import GPT
    from llmlab.train.checkpoint import find_checkpoint, load_trainer_state
    from llmlab.train.distributed import barrier, cleanup, init_distributed
    from llmlab.train.loop import Trainer, seed_everything
    from llmlab.train.precision import resolve_device

    tc = cfg.train
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

    device_type = resolve_device(tc.device).type
    ctx = init_distributed(tc.distributed, device_type)
    try:
        device = resolve_device(tc.device, ctx.local_rank)
        out_dir = Path(cfg.out_dir)
        if ctx.is_main:  # repair what a kill during a save left before any rank looks at the checkpoint
            find_checkpoint(out_dir / "checkpoints" / "last")
        barrier(ctx)
        last = _prepare_out_dir(out_dir, resume, cfg.overwrite, ctx.is_main)

        seed_everything(tc.seed)  # identical model init on every rank
        if resume:
            model = GPT.from_pretrained(last)
            diff = _config_differences(model.config, cfg.model)
            if diff:
                raise ValueError(f"the checkpoint's model differs from the config: {'; '.join(diff[:3])}")
            resume_state = load_trainer_state(last)
        else:
            model, resume_state = GPT(cfg.model), None
        train_loader = RandomWindowLoader(
            train_ds, tc.batch_size, block, seed=tc.seed, rank=ctx.rank, world_size=ctx.world_size
        )

        def val_batches() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            """This rank's rows of the first ``eval_iters`` global val batches (consecutive windows)."""
            r, w = ctx.rank, ctx.world_size
            for x, y in SequentialLoader(val_ds, tc.batch_size * w, block, max_batches=tc.eval_iters):
                if len(x) >= w:  # a partial last batch too small to give every rank a row is skipped
                    yield x[r::w], y[r::w]

        if ctx.is_main:
            save_config(cfg, out_dir / "config.yaml")
        tokenizer = train_ds.tokenizer_path
        trainer = Trainer(
            model,
            cfg,
            train_loader,
            val_batches if tc.eval_iters > 0 else None,
            out_dir,
            ctx=ctx,
            device=device,
            tokenizer_file=tokenizer if tokenizer.is_file() else None,
            resume_state=resume_state,
        )
        summary = trainer.fit()
        barrier(ctx)  # every rank's last collective is done before the process group goes away
        return summary
    finally:
        cleanup(ctx)
