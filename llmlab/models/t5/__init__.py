"""llmlab.models.t5: the T5 encoder-decoder family (config, model, presets, HF conversion)."""

from llmlab.models.registry import HFFormat, ModelFamily, register_family
from llmlab.models.t5.config import T5Config
from llmlab.models.t5.hf import HF_ARCHITECTURE, config_from_hf, config_to_hf, load_hf_t5, save_hf_t5
from llmlab.models.t5.model import T5
from llmlab.models.t5.presets import PRESETS

FAMILY = register_family(ModelFamily.of(T5, hf=HFFormat((HF_ARCHITECTURE,), ("t5",), load_hf_t5, save_hf_t5)))

__all__ = ["FAMILY", "PRESETS", "T5", "T5Config", "config_from_hf", "config_to_hf", "load_hf_t5", "save_hf_t5"]
