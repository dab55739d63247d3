"""Renaming tensors between llama.cpp (GGUF) and Hugging Face `transformers`, shared by every family.

llama.cpp renames every tensor when it converts a Hugging Face checkpoint (`convert_hf_to_gguf.py`,
https://github.com/ggml-org/llama.cpp/blob/master/convert_hf_to_gguf.py): per-layer tensors become
`blk.{i}.{part}.{weight|bias}` and the others get short global names (`token_embd`, `output_norm`, `output`).
A family describes its names once as a `TensorNames` table; `gguf_to_hf` and `hf_to_gguf` apply it in either
direction, with a family-specific `transform` for tensors whose layout differs too (Llama's q/k row
permutation, GPT-2's transposed `Conv1D` weights: see `llmlab.models.llama.gguf` and `llmlab.models.gpt.gguf`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch

_GGUF_LAYER = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")

# transform(gguf part, "weight" | "bias", tensor) -> tensor, applied to per-layer tensors.
Transform = Callable[[str, str, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TensorNames:
    """One family's GGUF <-> HF tensor names.

    Attributes:
        family: name used in error messages ("Llama", "GPT-2").
        hf_layers: HF prefix of the per-layer tensors ("model.layers", "transformer.h").
        layer: GGUF per-layer part -> HF per-layer part ("attn_q" -> "self_attn.q_proj").
        globals: GGUF global base name -> HF name ("token_embd" -> "model.embed_tokens").
        gguf_derived: GGUF tensors HF does not store (recomputed from the config), skipped when reading.
        hf_skipped: HF name suffixes that are buffers, not weights, skipped when writing.
    """

    family: str
    hf_layers: str
    layer: Mapping[str, str]
    globals: Mapping[str, str]
    gguf_derived: frozenset[str] = frozenset()
    hf_skipped: tuple[str, ...] = ()
    _hf_layer_re: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pattern = re.compile(rf"^{re.escape(self.hf_layers)}\.(\d+)\.(.+)\.(weight|bias)$")
        object.__setattr__(self, "_hf_layer_re", pattern)


def _rename(
    tensors: Mapping[str, torch.Tensor],
    layer_re: re.Pattern,
    layer: Mapping[str, str],
    globals_: Mapping[str, str],
    layer_name: Callable[[str, str, str], str],
    transform: Callable[[str, str, torch.Tensor], torch.Tensor] | None,
    what: str,
) -> dict[str, torch.Tensor]:
    """Rename per-layer tensors with `layer` (and `transform` them), the rest with `globals_`."""
    out: dict[str, torch.Tensor] = {}
    for name, w in tensors.items():
        m = layer_re.match(name)
        if m:
            idx, part, kind = m.groups()
            if part not in layer:
                raise ValueError(f"unknown {what} tensor {name!r}; known per-layer parts: {sorted(layer)}")
            out[layer_name(idx, layer[part], kind)] = transform(part, kind, w) if transform else w
            continue
        base, _, kind = name.rpartition(".")
        if base not in globals_:
            raise ValueError(f"unknown {what} tensor {name!r}")
        out[f"{globals_[base]}.{kind}"] = w
    return out


def gguf_to_hf(
    tensors: Mapping[str, torch.Tensor], names: TensorNames, transform: Transform | None = None
) -> dict[str, torch.Tensor]:
    """GGUF name -> tensor to HF name -> tensor (`transform(gguf_part, kind, w)` on per-layer tensors)."""
    kept = {k: v for k, v in tensors.items() if k not in names.gguf_derived}
    return _rename(
        kept,
        _GGUF_LAYER,
        names.layer,
        names.globals,
        lambda i, part, kind: f"{names.hf_layers}.{i}.{part}.{kind}",
        transform,
        f"{names.family} GGUF",
    )


def hf_to_gguf(
    state_dict: Mapping[str, torch.Tensor], names: TensorNames, transform: Transform | None = None
) -> dict[str, torch.Tensor]:
    """HF name -> tensor to GGUF name -> tensor, the inverse of `gguf_to_hf` (`transform` gets the GGUF part)."""
    hf_layer = {v: k for k, v in names.layer.items()}
    kept = {k: v for k, v in state_dict.items() if not (names.hf_skipped and k.endswith(names.hf_skipped))}

    def layer_name(i: str, gguf_part: str, kind: str) -> str:
        return f"blk.{i}.{gguf_part}.{kind}"

    def gguf_transform(hf_part: str, kind: str, w: torch.Tensor) -> torch.Tensor:
        return transform(hf_layer[hf_part], kind, w) if transform else w

    return _rename(
        kept,
        names._hf_layer_re,
        hf_layer,
        {v: k for k, v in names.globals.items()},
        layer_name,
        gguf_transform,
        f"HF {names.family}",
    )
