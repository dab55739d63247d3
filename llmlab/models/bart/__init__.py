"""llmlab.models.bart: the BART encoder-decoder family (config, model, presets, HF conversion)."""

from llmlab.models.bart.config import BartConfig
from llmlab.models.bart.hf import HF_ARCHITECTURE, config_from_hf, config_to_hf, load_hf_bart, save_hf_bart
from llmlab.models.bart.model import Bart
from llmlab.models.bart.presets import PRESETS
from llmlab.models.registry import HFFormat, ModelFamily, register_family

FAMILY = register_family(ModelFamily.of(Bart, hf=HFFormat((HF_ARCHITECTURE,), ("bart",), load_hf_bart, save_hf_bart)))

__all__ = ["FAMILY", "PRESETS", "Bart", "BartConfig", "config_from_hf", "config_to_hf", "load_hf_bart", "save_hf_bart"]
