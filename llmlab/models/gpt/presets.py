"""Named GPT presets: `PRESETS.get(name, **overrides) -> GPTConfig` (a fresh, validated copy each time)."""

from __future__ import annotations

from llmlab.models.gpt.config import GPTConfig
from llmlab.models.registry import PresetRegistry

PRESETS: PresetRegistry[GPTConfig] = PresetRegistry("model preset")

# Tiny character model for tests and the quickstart's fast mode.
PRESETS.add("nano-char", GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
# nanoGPT's "shakespeare_char" CPU config (vocab_size is set from the data at train time).
PRESETS.add("shakespeare-char", GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0))
# GPT-2 small, 124M parameters.
PRESETS.add("gpt2", GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
# A small Llama-style model: RMSNorm, SwiGLU, RoPE, GQA, no biases, untied embeddings.
PRESETS.add(
    "tiny-llama",
    GPTConfig(
        vocab_size=32000,
        block_size=256,
        n_layer=4,
        n_head=8,
        n_kv_head=2,
        n_embd=256,
        bias=False,
        position="rope",
        norm="rmsnorm",
        norm_eps=1e-6,
        mlp="swiglu",
        tie_embeddings=False,
    ),
)
# A small Mixture-of-Experts model (4 experts, top-2).
PRESETS.add(
    "tiny-moe",
    GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, moe_num_experts=4, moe_top_k=2),
)
