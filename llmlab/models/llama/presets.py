"""Named Llama presets: `PRESETS.get(name, **overrides) -> LlamaConfig` (a fresh, validated copy each time).

The published architectures (random weights when built from a preset; load real weights with
`llmlab.models.load_model` or `llmlab.models.smollm2.load_smollm2`).
"""

from __future__ import annotations

from dataclasses import replace

from llmlab.models.llama.config import LlamaConfig
from llmlab.models.registry import PresetRegistry

PRESETS: PresetRegistry[LlamaConfig] = PresetRegistry("llama preset")

# A tiny model for tests and demos: GQA, tied embeddings.
PRESETS.add(
    "llama-tiny",
    LlamaConfig(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
    ),
)
# SmolLM2 (Allal et al. 2025, https://arxiv.org/abs/2502.02737): GQA with 3 query heads per KV head, tied embeddings.
_SMOLLM2 = LlamaConfig(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    max_position_embeddings=8192,
    rms_norm_eps=1e-5,
    rope_theta=100000.0,
    tie_word_embeddings=True,
    bos_token_id=1,
    eos_token_id=2,
    pad_token_id=2,
)
PRESETS.add("smollm2-135m", _SMOLLM2)  # 30 layers, 9 heads / 3 KV heads
PRESETS.add(  # 32 layers, 15 heads / 5 KV heads
    "smollm2-360m",
    replace(_SMOLLM2, hidden_size=960, intermediate_size=2560, num_hidden_layers=32, num_attention_heads=15,
            num_key_value_heads=5),
)  # fmt: skip
# TinyLlama-1.1B (Zhang et al. 2024, https://arxiv.org/abs/2401.02385).
PRESETS.add(
    "tinyllama-1.1b",
    LlamaConfig(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
    ),
)
# Llama-2-7B (Touvron et al. 2023, https://arxiv.org/abs/2307.09288).
PRESETS.add(
    "llama2-7b",
    LlamaConfig(
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=4096,
        rms_norm_eps=1e-5,
    ),
)
# Llama-3.2-1B (llama3 RoPE scaling, tied embeddings).
PRESETS.add(
    "llama3.2-1b",
    LlamaConfig(
        vocab_size=128256,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=64,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        rope_theta=500000.0,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        tie_word_embeddings=True,
        bos_token_id=128000,
        eos_token_id=128001,
    ),
)
