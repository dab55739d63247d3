"""Tiny seeded models built from the registered presets, for tests: `from tiny_models import tiny_gpt, tiny_llama`
(and `tiny_hf_llama` / `tiny_hf_gpt2`, the `transformers` models).

Each builder seeds torch, takes a preset by name (the family's smallest by default) and applies `overrides`
structurally (`PresetRegistry.get`: unknown or mistyped fields are a ValueError), and returns the model in
eval mode.
"""

from __future__ import annotations

import torch

from llmlab.models.gpt import GPT
from llmlab.models.gpt import PRESETS as GPT_PRESETS
from llmlab.models.llama import PRESETS as LLAMA_PRESETS
from llmlab.models.llama import Llama

# A small vocabulary that every tiny model of the suite can use.
TINY_VOCAB = 64


def tiny_gpt(seed: int = 0, preset: str = "nano-char", **overrides: object) -> GPT:
    """A seeded `GPT` from `preset` (2 layers, 2 heads, width 32, context 32) with `overrides`."""
    torch.manual_seed(seed)
    return GPT(GPT_PRESETS.get(preset, **overrides)).eval()


def tiny_llama(seed: int = 0, preset: str = "llama-tiny", **overrides: object) -> Llama:
    """A seeded `Llama` from `preset` (2 layers, 4 heads / 2 KV heads, width 32, tied embeddings) with `overrides`."""
    torch.manual_seed(seed)
    return Llama(LLAMA_PRESETS.get(preset, **overrides)).eval()


def tiny_hf_llama(seed: int = 0, preset: str = "llama-tiny", **overrides: object):  # -> LlamaForCausalLM
    """A seeded `transformers` `LlamaForCausalLM` of the llmlab preset `preset` with `overrides` (HF field names).

    The oracle for comparisons: its `config.json` is what `save_hf` writes for the same config.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    from llmlab.models.llama import config_to_hf

    torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**config_to_hf(LLAMA_PRESETS.get(preset, **overrides)))).eval()


def tiny_hf_gpt2(seed: int = 0, **overrides: object):  # -> GPT2LMHeadModel
    """A seeded `transformers` `GPT2LMHeadModel` (2 layers, 4 heads, width 32, context 32, vocabulary 64) with
    `overrides` (`GPT2Config` field names)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    fields = {"vocab_size": TINY_VOCAB, "n_positions": 32, "n_embd": 32, "n_layer": 2, "n_head": 4, **overrides}
    return GPT2LMHeadModel(GPT2Config(**fields)).eval()


def tiny_models(seed: int = 0, vocab_size: int = TINY_VOCAB) -> dict[str, torch.nn.Module]:
    """One tiny model per family (and a post-norm GPT) sharing `vocab_size`: {"gpt", "gpt_post_norm", "llama"}."""
    return {
        "gpt": tiny_gpt(seed, vocab_size=vocab_size, n_head=4),
        "gpt_post_norm": tiny_gpt(seed, vocab_size=vocab_size, n_head=4, pre_norm=False),
        "llama": tiny_llama(seed, vocab_size=vocab_size),
    }


def spread(model: torch.nn.Module, std: float = 0.3, seed: int | None = None) -> torch.nn.Module:
    """Redraw every weight matrix of `model` from N(0, std) (after seeding torch with `seed`, if given) and return
    it in eval mode: larger weights than the 0.02-std init, so greedy continuations vary from step to step."""
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0.0, std)
    return model.eval()
