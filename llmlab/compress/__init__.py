"""llmlab.compress: quantization, pruning and distillation (layer 4, beside peft).

- `kernels.py`: the matmuls that read packed int8 / int4 weights (one place for the layouts and their fast paths).
"""
