"""llmlab.models.gpt: the GPT decoder family (config, model, presets, HF GPT-2 and GGUF conversion)."""

from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.gguf import GGUF_ARCHITECTURE, load_gguf_gpt2, save_gguf_gpt2
from llmlab.models.gpt.hf import HF_ARCHITECTURE, load_hf_gpt2, save_hf_gpt2
from llmlab.models.gpt.model import GPT, count_parameters, preset_table
from llmlab.models.gpt.presets import PRESETS
from llmlab.models.registry import GGUFFormat, HFFormat, ModelFamily, register_family
from llmlab.nn.outputs import ModelOutput

FAMILY = register_family(
    ModelFamily.of(
        GPT,
        hf=HFFormat((HF_ARCHITECTURE,), ("gpt2",), load_hf_gpt2, save_hf_gpt2),
        gguf=GGUFFormat(GGUF_ARCHITECTURE, load_gguf_gpt2, save_gguf_gpt2),
    )
)

__all__ = ["FAMILY", "GPT", "GPTConfig", "ModelOutput", "PRESETS", "count_parameters", "preset_table"]
