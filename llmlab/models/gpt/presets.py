"""Named model presets: `PRESETS.get(name) -> GPTConfig` (a fresh copy each time)."""

from __future__ import annotations

import copy
import dataclasses

from llmlab.config import Registry
from llmlab.models.gpt.config import GPTConfig


class _PresetRegistry(Registry[GPTConfig]):
    """A registry whose `get` returns a copy, so callers may modify the config freely."""

    def get(self, name: str) -> GPTConfig:
        return copy.deepcopy(super().get(name))


PRESETS = _PresetRegistry("model preset")

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


def preset_config(name: str, **overrides: object) -> GPTConfig:
    """The preset `name` with fields overridden, validated (unknown fields raise ValueError)."""
    cfg = PRESETS.get(name)
    known = {f.name for f in dataclasses.fields(GPTConfig)}
    bad = sorted(set(overrides) - known)
    if bad:
        raise ValueError(f"unknown GPTConfig field(s) {', '.join(bad)}; valid fields: {', '.join(sorted(known))}")
    cfg = dataclasses.replace(cfg, **overrides)
    cfg.validate()
    return cfg


def count_parameters(config: GPTConfig) -> int:
    """Exact parameter count of `GPT(config)`, computed on the meta device (no memory is allocated)."""
    import torch

    from llmlab.models.gpt.model import GPT

    with torch.device("meta"):
        return GPT(config).num_parameters()


def preset_table() -> list[tuple[str, int]]:
    """(name, parameter count) for every preset, sorted by name."""
    return [(name, count_parameters(PRESETS.get(name))) for name in PRESETS]
