"""Shared fixtures for the generation tests: SmolLM2-135M-Instruct, loaded once per test process."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def smollm2_hf(smollm2):
    """The same weights as a `transformers.LlamaForCausalLM` (converted in memory, no second GGUF read)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmlab.models.llama import config_to_hf

    model, _ = smollm2
    hf_config = {k: v for k, v in config_to_hf(model.config).items() if k not in ("architectures", "model_type")}
    hf = LlamaForCausalLM(LlamaConfig(**hf_config)).eval()
    missing, unexpected = hf.load_state_dict(model.export_state_dict(torch.float32), strict=False)
    tied = ["lm_head.weight"] if hf_config["tie_word_embeddings"] else []
    assert not unexpected and all("rotary" in k or k in tied for k in missing), (missing, unexpected)
    if tied:
        assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    return hf
