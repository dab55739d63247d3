"""Hugging Face checkpoint folders, shared by every family: `config.json`, safetensors weights (one file or
shards listed in `model.safetensors.index.json`), and `generation_config.json` with the special token ids.

The families translate their configs and tensor names (`llmlab.models.<family>.hf`); reading and writing the
folder itself happens here. No `transformers` import.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from llmlab.io import atomic_write, atomic_write_json
from llmlab.io.files import read_json
from llmlab.models.checkpoint_io import load_safetensors

TOKEN_ID_KEYS = ("bos_token_id", "eos_token_id", "pad_token_id")
TokenIds = Mapping[str, int | list[int] | None]  # bos_token_id / eos_token_id / pad_token_id


def read_hf_config(model_dir: str | os.PathLike) -> dict[str, Any]:
    """The parsed `config.json` of a HF checkpoint folder (FileNotFoundError / ValueError when missing/corrupt)."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass a folder saved by HF save_pretrained")
    cfg = read_json(path)
    if not isinstance(cfg, dict):
        raise ValueError(f"{path} does not hold a JSON object; re-save the model")
    return cfg


def read_hf_weights(model_dir: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a HF checkpoint folder: `model.safetensors`, or the shards named by its index file.

    Raises:
        FileNotFoundError: no weights, or a shard listed in the index is missing.
        ValueError: a corrupt index or a corrupt/truncated safetensors file.
    """
    d = Path(model_dir)
    single, index = d / "model.safetensors", d / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ValueError(f"{index} is not a valid safetensors index ({e}); re-save the checkpoint") from None
        files = [d / f for f in sorted(set(weight_map.values()))]
    else:
        raise FileNotFoundError(
            f"no model.safetensors or model.safetensors.index.json in {d}; save the HF model with safetensors"
        )
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"weight shard {f} listed in {index.name} is missing")
        sd.update(load_safetensors(f))
    return sd


def check_token_ids(token_ids: TokenIds | None) -> dict[str, Any]:
    """The given special token ids (None values dropped); ValueError naming an unknown key or a bad id."""
    out: dict[str, Any] = {}
    for key, value in (token_ids or {}).items():
        if key not in TOKEN_ID_KEYS:
            raise ValueError(f"unknown token id key '{key}'; use one of: {', '.join(TOKEN_ID_KEYS)}")
        ids = value if isinstance(value, list) else [value]
        if value is not None and not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ValueError(f"{key} must be a non-negative integer (or a list of them), got {value!r}")
        if value is not None:
            out[key] = value
    return out


def write_hf_folder(
    directory: str | os.PathLike,
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    token_ids: TokenIds | None = None,
) -> None:
    """Write `model.safetensors`, `config.json` and `generation_config.json` into `directory`, each atomically.

    Args:
        directory: destination folder (created if needed).
        state_dict: HF-named tensors.
        config: the HF `config.json` dict.
        token_ids: `bos_token_id` / `eos_token_id` / `pad_token_id` (e.g. the tokenizer's); they override the
            config's and go into `generation_config.json` too, so `transformers`' `generate` stops at the
            tokenizer's end-of-text instead of falling back to its defaults.
    """
    from safetensors.torch import save_file

    ids = {k: v for k, v in config.items() if k in TOKEN_ID_KEYS and v is not None}
    ids.update(check_token_ids(token_ids))
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in state_dict.items()}
    atomic_write(d / "model.safetensors", lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write_json(d / "config.json", {**config, **ids})
    if ids:
        atomic_write_json(d / "generation_config.json", {**ids, "_from_model_config": True})
