"""llmlab.models.llama: the Llama decoder family (config, model, RoPE scaling, presets, HF and GGUF conversion)."""

from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.gguf import GGUF_ARCHITECTURE, load_gguf_llama, save_gguf_llama
from llmlab.models.llama.hf import HF_ARCHITECTURE, config_from_hf, config_to_hf, load_hf_llama, save_hf_llama
from llmlab.models.llama.model import Llama, LlamaDecoderLayer
from llmlab.models.llama.presets import PRESETS
from llmlab.models.registry import GGUFFormat, HFFormat, ModelFamily, register_family
from llmlab.nn.outputs import ModelOutput

FAMILY = register_family(
    ModelFamily.of(
        Llama,
        hf=HFFormat((HF_ARCHITECTURE,), ("llama",), load_hf_llama, save_hf_llama),
        gguf=GGUFFormat(GGUF_ARCHITECTURE, load_gguf_llama, save_gguf_llama),
    )
)

__all__ = [
    "FAMILY",
    "Llama",
    "LlamaConfig",
    "LlamaDecoderLayer",
    "ModelOutput",
    "PRESETS",
    "config_from_hf",
    "config_to_hf",
    "load_hf_llama",
    "save_hf_llama",
]
