"""Quantized inference: layers that run on packed int8 / int4 / NF4 weights, `quantize(model, scheme)` (round to
nearest and GPTQ), saving/loading quantized folders, and GGUF Q8_0/Q4_0/Q4_1 blocks loaded as they are.

- `linear`: `Int8Linear`, `Int4Linear`, `NF4Linear`, `DynamicInt8Linear`, `QuantEmbedding` (the layouts).
- `quantize`: `quantize(model, scheme, ...)`, `SCHEMES`.
- `gptq`: GPTQ (Frantar et al. 2022, https://arxiv.org/abs/2210.17323).
- `serialize`: `save_quantized`, `load_quantized`, `is_quantized_folder`.
- `gguf`: `load_gguf_quantized` (GGUF blocks -> int8 / int4 layers, no float copy).
"""

from llmlab.compress.quant.gguf import load_gguf_quantized
from llmlab.compress.quant.gptq import gptq_quantize_layers, gptq_quantize_weight
from llmlab.compress.quant.linear import (
    DynamicInt8Linear,
    Int4Linear,
    Int8Linear,
    NF4Linear,
    QuantEmbedding,
)
from llmlab.compress.quant.quantize import (
    SCHEMES,
    check_scheme,
    dequantize_model,
    model_bytes,
    quantize,
    quantized_modules,
)
from llmlab.compress.quant.serialize import is_quantized_folder, load_quantized, read_quantization, save_quantized

__all__ = [
    "SCHEMES",
    "DynamicInt8Linear",
    "Int4Linear",
    "Int8Linear",
    "NF4Linear",
    "QuantEmbedding",
    "check_scheme",
    "dequantize_model",
    "gptq_quantize_layers",
    "gptq_quantize_weight",
    "is_quantized_folder",
    "load_gguf_quantized",
    "load_quantized",
    "model_bytes",
    "quantize",
    "quantized_modules",
    "read_quantization",
    "save_quantized",
]
