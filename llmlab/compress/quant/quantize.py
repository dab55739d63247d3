"""`quantize(model, scheme, ...)`: swap a model's linear layers (and its embedding / LM head) for quantized ones.

| scheme         | linear layers                         | embedding and LM head                  |
|----------------|---------------------------------------|----------------------------------------|
| `int8`         | `Int8Linear`, per channel (or groups) | int8, per row                          |
| `int4`         | `Int4Linear`, groups of 32/64/128     | int8, per row (1)                      |
| `nf4`          | `NF4Linear`, blocks of 32/64/128      | int8, per row (1)                      |
| `dynamic-int8` | `DynamicInt8Linear` (int8 x int8)     | head: `DynamicInt8Linear`; embedding int8 rows |
| `gptq-int4`    | `Int4Linear` from GPTQ (calibration)  | int8, per row (1)                      |

(1) As llama.cpp's 4-bit presets keep `token_embd`/`output` in 6-8 bits: on SmolLM2 an int4 embedding/head
alone raised held-out perplexity by ~8%, for 12 MB saved (docs/compression.md has the figures).

A tied embedding (SmolLM2) becomes a `QuantEmbedding` holding the very tensors of the quantized LM head, so the
model keeps one quantized copy. Norms, biases and everything else stay float.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from llmlab.compress.quant.gptq import gptq_quantize_layers
from llmlab.compress.quant.linear import (
    DynamicInt8Linear,
    Int4Linear,
    Int8Linear,
    NF4Linear,
    QuantEmbedding,
    check_group_size,
)

SCHEMES: tuple[str, ...] = ("int8", "int4", "nf4", "dynamic-int8", "gptq-int4")
DEFAULT_GROUP_SIZE = 64  # int4, nf4, gptq-int4


def check_scheme(scheme: str, group_size: int | None, calibration: object = None) -> int | None:
    """Validate the scheme options (one-line ValueError) and return the group size to use (None: per channel)."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown quantization scheme {scheme!r}; choose one of: {', '.join(SCHEMES)}")
    if group_size is not None and group_size <= 0:
        raise ValueError(f"the group size must be a positive integer (32, 64 or 128), got {group_size}")
    if scheme == "dynamic-int8" and group_size is not None:
        raise ValueError("dynamic-int8 quantizes weights per output channel; drop the group size")
    if scheme == "gptq-int4" and not calibration:
        raise ValueError("gptq-int4 needs calibration data (a corpus or a text file); pass --calibration")
    if scheme in ("int4", "nf4", "gptq-int4"):
        return group_size or DEFAULT_GROUP_SIZE
    return group_size


def _quantize_linear(lin: nn.Linear, scheme: str, group_size: int | None, symmetric: bool, name: str) -> nn.Module:
    """One linear layer in `scheme` (round to nearest)."""
    if scheme == "int8":
        return Int8Linear.from_linear(lin, group_size, name)
    if scheme == "dynamic-int8":
        return DynamicInt8Linear.from_linear(lin, None, name)
    if scheme == "nf4":
        return NF4Linear.from_linear(lin, group_size or DEFAULT_GROUP_SIZE, name)
    return Int4Linear.from_linear(lin, group_size or DEFAULT_GROUP_SIZE, symmetric, name)


def _head_scheme(scheme: str) -> str:
    """The scheme of the LM head and embedding (see the module table)."""
    return "dynamic-int8" if scheme == "dynamic-int8" else "int8"


def _module_paths(model: nn.Module) -> tuple[str, str]:
    """(embedding path, LM head path) of an llmlab decoder."""
    return getattr(model, "module_paths", {}).get("embed_tokens", "embed_tokens"), "lm_head"


@torch.no_grad()
def quantize(
    model: nn.Module,
    scheme: str,
    *,
    group_size: int | None = None,
    symmetric: bool = True,
    calibration: Sequence[torch.Tensor] | None = None,
    skip: Sequence[str] = (),
    act_order: bool = False,
) -> nn.Module:
    """Quantize `model` in place (module swap) and return it in eval mode.

    Args:
        model: an llmlab `GPT` or `Llama` (float weights).
        scheme: one of `SCHEMES`.
        group_size: int8: None = per channel, else groups of this many inputs; int4/nf4/gptq-int4: 32/64/128
            (default 64). Must divide the input features of every quantized layer (ValueError naming the layer).
        symmetric: int4 / gptq-int4 only: symmetric groups (zero = -8 * scale) or min/max (asymmetric).
        calibration: gptq-int4 only: a list of (1, T) LongTensors (token windows of a corpus).
        skip: qualified module names to leave in float (e.g. "lm_head").
        act_order: gptq-int4 only: quantize columns in order of decreasing Hessian diagonal.
    """
    group_size = check_scheme(scheme, group_size, calibration)
    skip = tuple(skip)
    embed_path, head_path = _module_paths(model)
    targets = {
        name: mod
        for name, mod in model.named_modules()
        if isinstance(mod, nn.Linear) and name not in skip and name != head_path
    }
    for name, lin in targets.items():  # every problem before any change
        if scheme != "dynamic-int8":
            check_group_size(lin.in_features, group_size or lin.in_features, name)
    model.eval()
    if scheme == "gptq-int4":
        done = gptq_quantize_layers(
            model, list(calibration or []), int(group_size or DEFAULT_GROUP_SIZE), symmetric,
            skip=skip, act_order=act_order,
        )  # fmt: skip
        targets = {name: mod for name, mod in targets.items() if name not in done}
    for name, lin in targets.items():
        model.set_submodule(name, _quantize_linear(lin, scheme, group_size, symmetric, name))
    _quantize_embedding_and_head(model, _head_scheme(scheme), skip, embed_path, head_path)
    return model


def _quantize_embedding_and_head(
    model: nn.Module, scheme: str, skip: tuple[str, ...], embed_path: str, head_path: str
) -> None:
    """The LM head in `scheme` (int8 / dynamic-int8, one scale per row); the embedding shares it when tied."""
    head, embed = model.get_submodule(head_path), model.get_submodule(embed_path)
    tied = isinstance(head, nn.Linear) and isinstance(embed, nn.Embedding) and head.weight is embed.weight
    if isinstance(head, nn.Linear) and head_path not in skip:
        new_head = _quantize_linear(head, scheme, None, True, head_path)
        model.set_submodule(head_path, new_head)
        if tied and embed_path not in skip:
            model.set_submodule(embed_path, QuantEmbedding.from_linear(new_head))  # type: ignore[arg-type]
            return
    if isinstance(embed, nn.Embedding) and embed_path not in skip:
        model.set_submodule(embed_path, QuantEmbedding.from_embedding(embed, "int8", None))


def quantized_modules(model: nn.Module) -> dict[str, str]:
    """Qualified name -> class name of every quantized module of `model` (what `quantization.json` records)."""
    kinds = (Int8Linear, Int4Linear, NF4Linear, QuantEmbedding)
    return {name: type(mod).__name__ for name, mod in model.named_modules() if isinstance(mod, kinds)}


@torch.no_grad()
def dequantize_model(model: nn.Module) -> nn.Module:
    """The inverse swap, in place: every quantized layer back to `nn.Linear` / `nn.Embedding` holding the float32
    weight it computes with (e.g. to export a quantized model to another format). A tied embedding stays tied."""
    embeddings = []
    for name, mod in list(model.named_modules()):
        if isinstance(mod, QuantEmbedding):
            embeddings.append((name, mod))
        elif isinstance(mod, (Int8Linear, Int4Linear, NF4Linear)):
            lin = nn.Linear(mod.in_features, mod.out_features, bias=mod.bias is not None, device="meta")
            lin.weight = nn.Parameter(mod.dequantize(), requires_grad=False)
            lin.bias = None if mod.bias is None else nn.Parameter(mod.bias.clone(), requires_grad=False)
            model.set_submodule(name, lin)
    for name, emb in embeddings:
        table = nn.Embedding(emb.num_embeddings, emb.embedding_dim, device="meta")
        head = getattr(model, "lm_head", None)
        tied = emb.tied and isinstance(head, nn.Linear)
        ids = torch.arange(emb.num_embeddings, device=emb.scale.device)
        table.weight = head.weight if tied else nn.Parameter(emb(ids), requires_grad=False)  # type: ignore[union-attr]
        model.set_submodule(name, table)
    return model


def model_bytes(model: nn.Module) -> int:
    """Bytes of every parameter and buffer of `model`, tensors shared by several modules counted once."""
    seen: dict[tuple[int, int], int] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen[(t.data_ptr(), t.numel())] = t.numel() * t.element_size()
    return sum(seen.values())
