"""Named BART presets: `PRESETS.get(name, **overrides) -> BartConfig` (random weights when built from one)."""

from __future__ import annotations

from llmlab.models.bart.config import BartConfig
from llmlab.models.registry import PresetRegistry

PRESETS: PresetRegistry[BartConfig] = PresetRegistry("bart preset")

PRESETS.add(
    "bart-tiny",
    BartConfig(vocab_size=256, n_embd=32, n_head=4, head_dim=8, d_ff=64, n_layer=2, block_size=128, dropout=0.0),
)
PRESETS.add("bart-base", BartConfig())  # facebook/bart-base's shape
PRESETS.add("bart-large", BartConfig(n_embd=1024, n_head=16, d_ff=4096, n_layer=12))
