"""llmlab: an LLM lab in Python/PyTorch — every step of the LLM lifecycle on a laptop CPU."""

__version__ = "0.1.0"
