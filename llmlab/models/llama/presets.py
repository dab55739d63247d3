"""Named Llama presets: `PRESETS.get(name, **overrides) -> LlamaConfig` (a fresh, validated copy each time).

The published architectures (random weights when built from a preset; load real weights with
`llmlab.models.load_model` or `llmlab.models.smollm2.load_smollm2`).
"""

from __future__ import annotations

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


def _published(
    vocab: int, width: int, ffn: int, layers: int, heads: int, kv_heads: int | None, context: int, **rest: object
) -> LlamaConfig:
    """A published Llama size: the shape as one row of numbers, RMSNorm epsilon 1e-5 (all of these use it)."""
    shape = dict(vocab_size=vocab, hidden_size=width, intermediate_size=ffn, num_hidden_layers=layers)
    heads_and_context = dict(num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=context)
    return LlamaConfig(**shape, **heads_and_context, rms_norm_eps=1e-5, **rest)  # type: ignore[arg-type]


# SmolLM2 (Allal et al. 2025, https://arxiv.org/abs/2502.02737): RoPE base 1e5, tied embeddings, <|im_end|> = 2.
_SMOLLM2 = dict(rope_theta=100000.0, tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
# llama3 RoPE scaling of Llama 3.1+ (Dubey et al. 2024, https://arxiv.org/abs/2407.21783), with Llama 3.2's factor.
_LLAMA32_ROPE = dict(
    rope_theta=500000.0,
    rope_scaling={
        "rope_type": "llama3",
        "factor": 32.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
)
# fmt: off
# columns: vocab, width, ffn (intermediate), layers, heads, kv heads (None = heads), context
PRESETS.add("smollm2-135m",   _published(49152,  576,  1536,  30,    9,    3,    8192, **_SMOLLM2))
PRESETS.add("smollm2-360m",   _published(49152,  960,  2560,  32,    15,   5,    8192, **_SMOLLM2))
# TinyLlama-1.1B (Zhang et al. 2024, https://arxiv.org/abs/2401.02385).
PRESETS.add("tinyllama-1.1b", _published(32000,  2048, 5632,  22,    32,   4,    2048))
# Llama-2-7B (Touvron et al. 2023, https://arxiv.org/abs/2307.09288): multi-head attention.
PRESETS.add("llama2-7b",      _published(32000,  4096, 11008, 32,    32,   None, 4096))
# Llama-3.2-1B: llama3 RoPE scaling, head_dim 64, tied embeddings.
PRESETS.add("llama3.2-1b",    _published(128256, 2048, 8192,  16,    32,   8,    131072, head_dim=64, **_LLAMA32_ROPE,
                                         tie_word_embeddings=True, bos_token_id=128000, eos_token_id=128001))
# fmt: on
