"""GGUF (llama.cpp) files <-> llmlab `Llama`, through the name mapping in `llmlab.models.formats`.

Reading: the metadata gives an HF-style config (`hf_config_from_gguf_llama`), the tensors are dequantised to
float32 and renamed/un-permuted to HF names (`gguf_to_hf_llama`), which are llmlab's names too.
Writing: the inverse (`hf_to_gguf_llama`, `llama_metadata_from_hf_config`) plus whatever tokenizer metadata
the caller passes (`tokenizer.ggml.*`, `tokenizer.chat_template`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from llmlab.models.checkpoint_io import skip_weight_init
from llmlab.models.formats import (
    GGUFFile,
    gguf_to_hf_llama,
    hf_config_from_gguf_llama,
    hf_to_gguf_llama,
    llama_metadata_from_hf_config,
    read_gguf,
    write_gguf,
)
from llmlab.models.llama.hf import config_from_hf, config_to_hf
from llmlab.models.llama.model import Llama, load_state_dict_checked

GGUF_ARCHITECTURE = "llama"


def config_from_gguf(f: GGUFFile) -> dict[str, Any]:
    """The HF-style config dict of a Llama GGUF file (raises ValueError for another architecture)."""
    if f.architecture != GGUF_ARCHITECTURE:
        raise ValueError(f"{f.path} holds a '{f.architecture}' model, not '{GGUF_ARCHITECTURE}'")
    return hf_config_from_gguf_llama(f.metadata, set(f.tensors))


def load_gguf_llama(source: str | os.PathLike | GGUFFile, device: torch.device | str = "cpu") -> Llama:
    """Build a float32 `Llama` from a GGUF file (quantised tensors are dequantised).

    Args:
        source: a `.gguf` path or an already-read `GGUFFile`.
        device: where to put the model.
    """
    f = source if isinstance(source, GGUFFile) else read_gguf(source)
    hf_config = config_from_gguf(f)
    config = config_from_hf(hf_config)
    sd = gguf_to_hf_llama(f.tensors, hf_config)
    with skip_weight_init():
        model = Llama(config)
    load_state_dict_checked(model, sd, str(f.path))
    return model.to(device).eval()


def save_gguf_llama(
    model: Llama,
    path: str | os.PathLike,
    dtype: str = "F32",
    extra_metadata: Mapping[str, Any] | None = None,
    metadata_types: Mapping[str, str] | None = None,
) -> None:
    """Write `model` as a llama.cpp GGUF file (`dtype` "F32", "F16" or "Q8_0"; norms stay F32), atomically.

    Args:
        model: the model.
        path: destination `.gguf` file.
        dtype: storage type of the matrices.
        extra_metadata: more keys, typically the tokenizer (`tokenizer.ggml.*`, `tokenizer.chat_template`).
        metadata_types: GGUF type names for keys of `extra_metadata` that must keep a specific type.
    """
    hf_config = config_to_hf(model.config)
    tensors = hf_to_gguf_llama(model.export_state_dict(), hf_config)
    metadata: dict[str, Any] = {"general.name": "llmlab-llama", **llama_metadata_from_hf_config(hf_config)}
    scaling = model.config.rope_scaling
    if scaling and model.config.rope_type == "linear":  # llama.cpp knows linear scaling by name
        metadata["llama.rope.scaling.type"] = "linear"
        metadata["llama.rope.scaling.factor"] = float(scaling["factor"])
    elif scaling:
        raise ValueError(
            f"rope_scaling type '{model.config.rope_type}' cannot be stored in GGUF by llmlab; "
            "convert to hf or llmlab instead"
        )
    metadata.update(extra_metadata or {})
    write_gguf(path, GGUF_ARCHITECTURE, metadata, tensors, dtype, metadata_types=metadata_types)
