"""GGUF Q8_0 / Q4_0 / Q4_1 files loaded into the quantized layers as they are: `load_gguf_quantized`.

llama.cpp's blocks of 32 values map onto llmlab's layouts (`llmlab.compress.kernels`) with group size 32:

    Q8_0  {f16 d; int8 q[32]}         -> Int8Linear  qweight = q,            scale = d
    Q4_0  {f16 d; uint8 qs[16]}       -> Int4Linear  packed = re-paired qs,  scale = d, zero = -8 d
    Q4_1  {f16 d; f16 m; uint8 qs[16]} -> Int4Linear  packed = re-paired qs,  scale = d, zero = m

(ggml puts value j of a block in the low nibble of byte j and value j + 16 in its high nibble; llmlab pairs
columns 2i and 2i + 1, so the nibbles are re-paired once at load.) The blocks are read from the memory-mapped
file one tensor at a time: no float copy of a quantized weight is ever made, and the model holds about as many
bytes as the file. Llama's q/k rows are un-permuted (llama.cpp's RoPE order, see `llmlab.models.llama.gguf`) on
the packed rows, scales and zeros alike. Other tensors (norms: F32; any other type) are dequantised to float.
"""

from __future__ import annotations

import os

import torch

from llmlab.compress.kernels import pack_int4
from llmlab.compress.quant.linear import Int4Linear, Int8Linear, QuantEmbedding
from llmlab.compress.quant.serialize import load_float_tensors
from llmlab.io.gguf import BLOCK_BYTES, GGUFFile, read_gguf
from llmlab.models.checkpoint_io import skip_weight_init
from llmlab.models.llama import Llama
from llmlab.models.llama.gguf import ROPE_FREQS, gguf_to_hf_llama, hf_config_from_gguf_llama
from llmlab.models.llama.hf import config_from_hf

QUANTIZED_GGUF_TYPES: tuple[str, ...] = tuple(BLOCK_BYTES)  # Q8_0, Q4_0, Q4_1


def _f16_field(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The float16 at byte `start` of every block: (rows, blocks) float16."""
    return blocks[:, :, start : start + 2].contiguous().view(torch.float16)[:, :, 0]


def _ggml_nibbles_to_packed(qs: torch.Tensor) -> torch.Tensor:
    """(rows, blocks, 16) ggml bytes -> (rows, blocks * 16) llmlab packed bytes (columns 2i, 2i + 1 per byte)."""
    codes = torch.cat((qs & 0x0F, qs >> 4), dim=2)  # (rows, blocks, 32): values in block order
    return pack_int4(codes.reshape(qs.shape[0], -1))


def block_layout(blocks: torch.Tensor, qtype: str) -> dict[str, torch.Tensor]:
    """GGUF blocks (rows, blocks, bytes) of `qtype` -> the llmlab layout's tensors (see the module docstring)."""
    d = _f16_field(blocks, 0)  # (rows, G)
    if qtype == "Q8_0":
        return {"qweight": blocks[:, :, 2:].contiguous().view(torch.int8).reshape(blocks.shape[0], -1), "scale": d}
    if qtype == "Q4_0":
        return {"packed": _ggml_nibbles_to_packed(blocks[:, :, 2:]), "scale": d, "zero": (-8.0 * d.float()).half()}
    return {"packed": _ggml_nibbles_to_packed(blocks[:, :, 4:]), "scale": d, "zero": _f16_field(blocks, 2)}


def _quantized_module(f: GGUFFile, name: str, hf_config: dict) -> tuple[str, Int8Linear | Int4Linear]:
    """(HF module path, layer) of the quantized GGUF matrix `name`, rows in HF order."""
    layout = block_layout(f.raw_blocks(name), f.tensor_types[name])
    renamed = {key: gguf_to_hf_llama({name: t}, hf_config) for key, t in layout.items()}  # un-permutes q/k rows
    path = next(iter(renamed["scale"]))
    parts = {key: next(iter(t.values())) for key, t in renamed.items()}
    if "qweight" in parts:
        return path.removesuffix(".weight"), Int8Linear(parts["qweight"], parts["scale"])
    return path.removesuffix(".weight"), Int4Linear(parts["packed"], parts["scale"], parts["zero"])


def load_gguf_quantized(source: str | os.PathLike | GGUFFile, device: torch.device | str = "cpu") -> Llama:
    """A Llama whose Q8_0/Q4_0/Q4_1 matrices are `Int8Linear` / `Int4Linear` layers read straight from the blocks.

    A tied token embedding becomes the LM head's layer plus a `QuantEmbedding` sharing its tensors.

    Raises:
        ValueError: not a llama-architecture file (other families: load without keeping it quantized).
    """
    f = source if isinstance(source, GGUFFile) else read_gguf(source)
    if f.architecture != "llama":
        raise ValueError(
            f"{f.path} holds a '{f.architecture}' model; only llama GGUF files load quantized (drop --keep-quantized)"
        )
    try:
        hf_config = hf_config_from_gguf_llama(f.metadata, f.tensors)
    except ValueError as e:
        raise ValueError(f"{f.path}: {e}") from None
    with skip_weight_init():
        model = Llama(config_from_hf(hf_config))  # float weights allocated, never touched, replaced below
    floats: dict[str, torch.Tensor] = {}
    quantized: dict[str, Int8Linear | Int4Linear] = {}
    for name, qtype in f.tensor_types.items():
        if name == ROPE_FREQS:  # folded into the config's rope scaling
            continue
        if qtype in QUANTIZED_GGUF_TYPES and len(f.tensor_shapes[name]) == 2:
            path, module = _quantized_module(f, name, hf_config)
            quantized[path] = module
        else:
            floats.update(gguf_to_hf_llama({name: f.tensors[name]}, hf_config))
    embed_path, tied = "model.embed_tokens", bool(hf_config["tie_word_embeddings"])
    embed = quantized.pop(embed_path, None)
    for path, module in quantized.items():
        model.set_submodule(path, module)
    if embed is not None:
        if tied:
            model.set_submodule("lm_head", embed)
        model.set_submodule(embed_path, QuantEmbedding(embed, tied=tied))
    names = (*quantized, *((embed_path, "lm_head") if embed is not None and tied else ()))
    if embed is not None and not tied:
        names = (*names, embed_path)
    load_float_tensors(model, floats, names, f.path, tied)
    return model.to(device).eval()
