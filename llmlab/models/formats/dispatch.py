"""Load any supported checkpoint by what it is, and write models in other formats, through the family registry.

`load_model(path)` looks at what `path` holds and picks the family (`llmlab.models.registry`):

| path holds                                    | decided by                                | family             |
|-----------------------------------------------|-------------------------------------------|--------------------|
| `model_config.json` (llmlab save_pretrained)  | its `"family"` key (absent = `"gpt"`)     | any registered one |
| `config.json` (Hugging Face save_pretrained)  | `architectures` / `model_type`            | `hf.architectures`  |
| a `.gguf` file (or a folder with exactly one) | `general.architecture`                    | `gguf.architecture` |

An architecture llmlab does not implement is a ValueError that names it and lists the supported ones.
The writers (`save_llmlab`, `save_hf`, `save_gguf`) dispatch on the model's class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from llmlab.io.files import read_json
from llmlab.io.gguf import GGUFFile, read_gguf
from llmlab.models.formats.hf import TokenIds, read_hf_config
from llmlab.models.registry import ModelFamily, family_of, get_family, gguf_family, hf_family

LLMLAB_CONFIG = "model_config.json"
DEFAULT_FAMILY = "gpt"  # model_config.json files written before the "family" key existed are GPT


def detect_format(path: str | os.PathLike) -> tuple[str, Path]:
    """What kind of checkpoint `path` is: ("llmlab" | "hf" | "gguf", the folder or file to read).

    Raises:
        FileNotFoundError: nothing there, or a folder without any known checkpoint file.
        ValueError: a folder with several `.gguf` files (ambiguous).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    if p.is_file():
        if p.suffix == ".gguf":
            return "gguf", p
        p = p.parent  # e.g. the path of config.json or model.safetensors
    if (p / LLMLAB_CONFIG).is_file():
        return "llmlab", p
    if (p / "config.json").is_file():
        return "hf", p
    ggufs = sorted(p.glob("*.gguf"))
    if len(ggufs) == 1:
        return "gguf", ggufs[0]
    if len(ggufs) > 1:
        raise ValueError(f"{p} holds several .gguf files ({', '.join(g.name for g in ggufs)}); pass one of them")
    raise FileNotFoundError(
        f"{p} is not a checkpoint: expected model_config.json (llmlab), config.json (Hugging Face) or a .gguf file"
    )


def _llmlab_family(d: Path) -> ModelFamily:
    cfg_path = d / LLMLAB_CONFIG
    cfg = read_json(cfg_path, "re-save the model")
    name = cfg.get("family", DEFAULT_FAMILY) if isinstance(cfg, dict) else None
    try:
        return get_family(str(name))
    except ValueError as e:
        raise ValueError(f"{cfg_path} names the model family {name!r}: {e}") from None


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """Load a llmlab, Hugging Face or GGUF checkpoint as an llmlab model in eval mode.

    Args:
        path: a checkpoint folder, its config file, or a `.gguf` file.
        device: where to put the model.

    Raises:
        FileNotFoundError: missing files.
        ValueError: an architecture llmlab does not implement, or corrupt/truncated files.
    """
    kind, p = detect_format(path)
    if kind == "llmlab":
        model = _llmlab_family(p).model_class.from_pretrained(p)
    elif kind == "hf":
        model = hf_family(read_hf_config(p)).hf.load(p)  # hf_family only returns families with a HF form
    else:
        model = load_gguf_model(p)
    return model.to(device).eval()


def load_gguf_model(source: str | os.PathLike | GGUFFile) -> nn.Module:
    """An llmlab model (float32, dequantised, eval mode) from a `.gguf` path or an already-read `GGUFFile`."""
    f = source if isinstance(source, GGUFFile) else read_gguf(source)
    return gguf_family(f.architecture, f.path).gguf.load(f).eval()


def model_family(model: nn.Module) -> str:
    """The family name of an llmlab model, e.g. 'gpt' or 'llama' (ValueError for anything else)."""
    return family_of(model).name


def save_llmlab(model: nn.Module, directory: str | os.PathLike, dtype: torch.dtype | None = None) -> None:
    """`save_pretrained` for any family, optionally storing the weights in `dtype`."""
    family_of(model)  # ValueError for a model that is not llmlab's
    model.save_pretrained(directory, dtype=dtype)


def save_hf(
    model: nn.Module,
    directory: str | os.PathLike,
    dtype: torch.dtype = torch.float32,
    token_ids: TokenIds | None = None,
) -> None:
    """Write a HF checkpoint (`config.json`, `generation_config.json`, `model.safetensors`) for `transformers`.

    Args:
        model: an llmlab model whose family has a HF form.
        directory: destination folder.
        dtype: storage dtype of the weights.
        token_ids: `{"bos_token_id": .., "eos_token_id": .., "pad_token_id": ..}` (e.g. the tokenizer's; None
            values are skipped), written to both JSON files so `transformers`' `generate` stops at them.
    """
    family = family_of(model)
    if family.hf is None:
        raise ValueError(f"the {family.name} family has no Hugging Face form; save it with --format llmlab")
    family.hf.save(model, directory, dtype, token_ids)


def save_gguf(
    model: nn.Module,
    path: str | os.PathLike,
    dtype: str = "F32",
    extra_metadata: Mapping[str, Any] | None = None,
    metadata_types: Mapping[str, str] | None = None,
) -> None:
    """Write a GGUF file (`dtype` "F32" | "F16" | "Q8_0") with `extra_metadata` (e.g. the tokenizer)."""
    family = family_of(model)
    if family.gguf is None:
        raise ValueError(f"the {family.name} family has no GGUF form; save it with --format llmlab or hf")
    family.gguf.save(model, path, dtype, extra_metadata, metadata_types)
