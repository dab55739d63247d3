"""llmlab.compress: quantization, pruning and distillation (layer 4, beside peft).

- `kernels.py`: the matmuls that read packed int8 / int4 weights (one place for the layouts and their fast paths).
- `quant/`: quantized layers, `quantize(model, scheme)` (round to nearest, GPTQ), quantized folders, GGUF blocks.
"""

from llmlab.compress.quant import (
    SCHEMES,
    DynamicInt8Linear,
    Int4Linear,
    Int8Linear,
    NF4Linear,
    QuantEmbedding,
    is_quantized_folder,
    load_gguf_quantized,
    load_quantized,
    quantize,
    save_quantized,
)

__all__ = [
    "SCHEMES",
    "DynamicInt8Linear",
    "Int4Linear",
    "Int8Linear",
    "NF4Linear",
    "QuantEmbedding",
    "is_quantized_folder",
    "load_gguf_quantized",
    "load_quantized",
    "quantize",
    "save_quantized",
]
