"""llmlab.models: model families built from `llmlab.nn` components."""

from llmlab.models.gpt import GPT, PRESETS, GPTConfig, ModelOutput

__all__ = ["GPT", "GPTConfig", "ModelOutput", "PRESETS"]
