"""llmlab.models.llama: the Llama decoder family (config, model, RoPE scaling, presets, HF and GGUF conversion)."""

from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.hf import config_from_hf, config_to_hf, load_hf_llama, save_hf_llama
from llmlab.models.llama.model import Llama, LlamaDecoderLayer, ModelOutput
from llmlab.models.llama.presets import PRESETS, preset_config

__all__ = [
    "Llama",
    "LlamaConfig",
    "LlamaDecoderLayer",
    "ModelOutput",
    "PRESETS",
    "config_from_hf",
    "config_to_hf",
    "load_hf_llama",
    "preset_config",
    "save_hf_llama",
]
