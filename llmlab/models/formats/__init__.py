"""Model file formats: GGUF (llama.cpp) reading/writing and the tensor-name mappings to Hugging Face names."""

from llmlab.io.gguf import SUPPORTED_TYPES, GGUFFile, read_gguf, write_gguf
from llmlab.models.formats.gguf_names import (
    gguf_to_hf_gpt2,
    gguf_to_hf_llama,
    hf_config_from_gguf_llama,
    hf_to_gguf_gpt2,
    hf_to_gguf_llama,
    llama_metadata_from_hf_config,
)

__all__ = [
    "SUPPORTED_TYPES",
    "GGUFFile",
    "read_gguf",
    "write_gguf",
    "gguf_to_hf_llama",
    "hf_to_gguf_llama",
    "hf_config_from_gguf_llama",
    "llama_metadata_from_hf_config",
    "gguf_to_hf_gpt2",
    "hf_to_gguf_gpt2",
]
