"""llmlab.models.gpt: the GPT decoder family (config, model, presets, HF GPT-2 and GGUF conversion)."""

from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.gguf import GGUF_ARCHITECTURE, load_gguf_gpt2, save_gguf_gpt2
from llmlab.models.gpt.hf import load_hf_gpt2, save_hf_gpt2
from llmlab.models.gpt.model import GPT, ModelOutput, count_parameters, preset_table
from llmlab.models.gpt.presets import PRESETS
from llmlab.models.registry import ModelFamily, register_family

FAMILY = register_family(
    ModelFamily(
        name="gpt",
        config_class=GPTConfig,
        model_class=GPT,
        presets=PRESETS,
        hf_architectures=("GPT2LMHeadModel",),
        hf_model_types=("gpt2",),
        load_hf=load_hf_gpt2,
        save_hf=save_hf_gpt2,
        gguf_architecture=GGUF_ARCHITECTURE,
        load_gguf=load_gguf_gpt2,
        save_gguf=save_gguf_gpt2,
    )
)

__all__ = ["FAMILY", "GPT", "GPTConfig", "ModelOutput", "PRESETS", "count_parameters", "preset_table"]
