"""Find and load a model + tokenizer for inference from a checkpoint folder or a training run folder.

Accepted layouts:
    <ckpt>/model_config.json, <ckpt>/model.safetensors, <ckpt>/tokenizer.json     (save_pretrained + tokenizer)
    <run>/checkpoints/last/...                                                   (a `llmlab pretrain` run folder)
For a run folder the tokenizer is looked up in `checkpoints/last/`, then the run folder, then the data
folder named by the run's `config.yaml` (`data.dir`), where `llmlab data prepare` writes `tokenizer.json`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Return the folder holding `model_config.json` for a checkpoint folder or a run folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}; pass a folder with model_config.json or a run folder")
    if path.is_file():
        path = path.parent
    for candidate in (path, path / "checkpoints" / "last", path / "last"):
        if (candidate / "model_config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"no model_config.json in {path} (nor in {path / 'checkpoints' / 'last'}); "
        "pass a checkpoint folder written by save_pretrained or a `llmlab pretrain` run folder"
    )


def find_tokenizer_file(checkpoint_dir: Path) -> Path:
    """Locate `tokenizer.json` for a checkpoint (see the module docstring for the search order)."""
    candidates = [checkpoint_dir / "tokenizer.json"]
    run_dirs = [p for p in (checkpoint_dir.parent, checkpoint_dir.parent.parent) if (p / "config.yaml").is_file()]
    for run_dir in run_dirs:
        candidates.append(run_dir / "tokenizer.json")
        try:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            cfg = {}
        data_dir = (cfg.get("data") or {}).get("dir") if isinstance(cfg, dict) else None
        if data_dir:
            candidates += [Path(data_dir) / "tokenizer.json", run_dir / data_dir / "tokenizer.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no tokenizer.json next to the checkpoint {checkpoint_dir}; copy the tokenizer.json used for training there"
    )


def load_model_and_tokenizer(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """Load `(GPT in eval mode, llmlab Tokenizer)` from a checkpoint folder or a run folder."""
    from llmlab.models.gpt import GPT
    from llmlab.tokenizers import load_tokenizer

    checkpoint_dir = resolve_checkpoint_dir(path)
    tokenizer = load_tokenizer(find_tokenizer_file(checkpoint_dir))
    model = GPT.from_pretrained(checkpoint_dir).to(device)
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"tokenizer.json has {tokenizer.vocab_size} tokens but the model only {model.config.vocab_size}; "
            f"use the tokenizer the model in {checkpoint_dir} was trained with"
        )
    model.eval()
    return model, tokenizer
