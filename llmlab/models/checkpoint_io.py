"""Reading and writing model folders, shared by every family: atomic writes of config + safetensors, loading with
one-line errors, and a strict state-dict load that names missing, unexpected or mis-shaped tensors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.io import atomic_write, atomic_write_json
from llmlab.io.files import read_json


def load_safetensors(path: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """`safetensors.torch.load_file` with a one-line ValueError for corrupt or truncated files."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device=str(device))
    except Exception as e:  # safetensors raises its own error type on truncated/corrupt files
        raise ValueError(f"{path} is corrupt or truncated ({str(e).splitlines()[0]}); re-create it") from None


def write_model_folder(
    directory: str | os.PathLike,
    config_name: str,
    config: Mapping[str, Any],
    weights_name: str,
    state_dict: Mapping[str, torch.Tensor],
) -> None:
    """Write `state_dict` as safetensors and `config` as JSON into `directory` (created if needed), each atomically."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = dict(state_dict)
    atomic_write(d / weights_name, lambda p: save_file(tensors, str(p), metadata={"format": "pt"}))
    atomic_write_json(d / config_name, dict(config))


def read_model_folder(directory: str | os.PathLike, config_name: str, weights_name: str) -> tuple[dict[str, Any], Path]:
    """The parsed config JSON of a model folder and the path of its weights file.

    Raises:
        FileNotFoundError: the config or the weights file is missing.
        ValueError: the config is not valid JSON.
    """
    d = Path(directory)
    cfg_path, w_path = d / config_name, d / weights_name
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise FileNotFoundError(f"{p} not found; pass a folder written by save_pretrained (or a checkpoint)")
    return read_json(cfg_path, "re-save the model"), w_path


_INIT_FUNCTIONS = ("normal_", "uniform_", "kaiming_uniform_", "kaiming_normal_", "trunc_normal_", "xavier_uniform_",
                   "xavier_normal_", "zeros_", "ones_", "constant_", "orthogonal_")  # fmt: skip


@contextlib.contextmanager
def skip_weight_init() -> Iterator[None]:
    """Build a model without initialising its weights, because a checkpoint is about to overwrite all of them.

    Inside the block the `torch.nn.init` functions return their tensor untouched (as transformers'
    `no_init_weights` does), so a model is allocated but not randomly filled: for SmolLM2-135M that saves
    about 2 s per load. Only use it when a strict load (`load_state_dict_checked`) follows, which guarantees
    that every parameter is overwritten; buffers computed in `__init__` (RoPE tables, masks) are unaffected.
    """
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}

    def untouched(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, untouched)
        yield
    finally:
        for name, fn in saved.items():
            setattr(nn.init, name, fn)


def load_state_dict_checked(model: nn.Module, sd: dict[str, torch.Tensor], source: str, tied_lm_head: bool) -> None:
    """Load `sd` into `model`; one-line ValueError on missing/unexpected keys or shape mismatches.

    With `tied_lm_head` the output layer shares the embedding: `lm_head.weight` is neither expected nor used.
    """
    expected = model.state_dict()
    if tied_lm_head:
        expected.pop("lm_head.weight", None)
        sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}
    missing = sorted(set(expected) - set(sd))
    unexpected = sorted(set(sd) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"weights in {source} do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for k, v in sd.items():
        if v.shape != expected[k].shape:
            raise ValueError(
                f"weights in {source}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}"
            )
    model.load_state_dict(sd, strict=False)
