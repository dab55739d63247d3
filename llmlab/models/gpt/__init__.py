"""llmlab.models.gpt: the GPT decoder family (config, model, presets, HF GPT-2 conversion)."""

from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.model import GPT, ModelOutput
from llmlab.models.gpt.presets import PRESETS, count_parameters, preset_config, preset_table

__all__ = ["GPT", "GPTConfig", "ModelOutput", "PRESETS", "count_parameters", "preset_config", "preset_table"]
