"""llmlab.models: model families built from `llmlab.nn` components, and loading/saving them in every format.

The format-level API (model weights only; `llmlab.hub` adds tokenizer, chat template and adapters):
`detect_format`, `load_model`, `load_gguf_model`, `model_family`, `save_llmlab`, `save_hf`, `save_gguf`.
"""

from llmlab.models.gpt import GPT, PRESETS, GPTConfig, ModelOutput
from llmlab.models.hub import (
    detect_format,
    load_gguf_model,
    load_model,
    model_family,
    save_gguf,
    save_hf,
    save_llmlab,
)

__all__ = [
    "GPT",
    "GPTConfig",
    "ModelOutput",
    "PRESETS",
    "detect_format",
    "load_gguf_model",
    "load_model",
    "model_family",
    "save_gguf",
    "save_hf",
    "save_llmlab",
]
