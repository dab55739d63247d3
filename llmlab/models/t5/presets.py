"""Named T5 presets: `PRESETS.get(name, **overrides) -> T5Config` (random weights when built from one)."""

from __future__ import annotations

from llmlab.models.registry import PresetRegistry
from llmlab.models.t5.config import T5Config

PRESETS: PresetRegistry[T5Config] = PresetRegistry("t5 preset")

# Tiny models for tests and demos.
PRESETS.add("t5-tiny", T5Config(vocab_size=256, n_embd=32, n_head=4, head_dim=8, d_ff=64, n_layer=2, dropout=0.0))
PRESETS.add(
    "t5-v1_1-tiny",
    T5Config(vocab_size=256, n_embd=32, n_head=4, head_dim=8, d_ff=48, n_layer=2, dropout=0.0,
             mlp="gated-gelu", tie_embeddings=False),
)  # fmt: skip
# The published shapes (t5-small; google/t5-v1_1-small).
PRESETS.add("t5-small", T5Config())
PRESETS.add(
    "t5-v1_1-small",
    T5Config(n_embd=512, n_head=6, head_dim=64, d_ff=1024, n_layer=8, mlp="gated-gelu", tie_embeddings=False),
)
# "T5-small sized down": the code -> docstring experiment's model (docs/seq2seq.md).
PRESETS.add(
    "t5-mini",
    T5Config(vocab_size=4096, n_embd=192, n_head=4, head_dim=48, d_ff=512, n_layer=3, block_size=256,
             mlp="gated-gelu", tie_embeddings=False),
)  # fmt: skip
