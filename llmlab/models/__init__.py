"""llmlab.models: model families built from `llmlab.nn` components, and loading/saving them in every format.

Each family (`gpt`, `llama`) registers itself in `llmlab.models.registry` when its package is imported (here).
The format-level API (model weights only; `llmlab.hub` adds tokenizer, chat template and adapters):
`detect_format`, `load_model`, `load_gguf_model`, `model_family`, `save_llmlab`, `save_hf`, `save_gguf`.
"""

from llmlab.models import bart, bert, gpt, llama, t5  # noqa: F401  (registers the families)
from llmlab.models.formats.dispatch import (
    detect_format,
    load_gguf_model,
    load_model,
    model_family,
    save_gguf,
    save_hf,
    save_llmlab,
)
from llmlab.models.gpt import GPT, PRESETS, GPTConfig, ModelOutput
from llmlab.models.registry import FAMILIES, ModelFamily, PresetRegistry, get_family, register_family

__all__ = [
    "FAMILIES",
    "GPT",
    "GPTConfig",
    "ModelFamily",
    "ModelOutput",
    "PRESETS",
    "PresetRegistry",
    "detect_format",
    "get_family",
    "load_gguf_model",
    "load_model",
    "model_family",
    "register_family",
    "save_gguf",
    "save_hf",
    "save_llmlab",
]
