"""llmlab.models.llama: the Llama decoder family (config, model, RoPE scaling, presets, HF and GGUF conversion)."""

from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.gguf import GGUF_ARCHITECTURE, load_gguf_llama, save_gguf_llama
from llmlab.models.llama.hf import HF_ARCHITECTURE, config_from_hf, config_to_hf, load_hf_llama, save_hf_llama
from llmlab.models.llama.model import Llama, LlamaDecoderLayer, ModelOutput
from llmlab.models.llama.presets import PRESETS
from llmlab.models.registry import ModelFamily, register_family

FAMILY = register_family(
    ModelFamily(
        name="llama",
        config_class=LlamaConfig,
        model_class=Llama,
        presets=PRESETS,
        hf_architectures=(HF_ARCHITECTURE,),
        hf_model_types=("llama",),
        load_hf=load_hf_llama,
        save_hf=save_hf_llama,
        gguf_architecture=GGUF_ARCHITECTURE,
        load_gguf=load_gguf_llama,
        save_gguf=save_gguf_llama,
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
