"""Rotary position embeddings with the context-extension ("RoPE scaling") variants Llama checkpoints use.

RoPE (Su et al., RoFormer, https://arxiv.org/abs/2104.09864) rotates each pair of query/key features by an
angle `position * inv_freq[i]` with `inv_freq[i] = theta^(-2i/d)`. Scaling methods stretch a model trained
on a short context to a longer one by changing `inv_freq` (the HF `rope_scaling` dict names the method):

- `linear` (position interpolation, Chen et al. 2023, https://arxiv.org/abs/2306.15595): divide every
  frequency by `factor`, i.e. squeeze positions `p -> p / factor`.
- `dynamic` (dynamic NTK-aware scaling, bloc97/emozilla 2023, described in YaRN, Peng et al.
  https://arxiv.org/abs/2309.00071): once the sequence is longer than `max_position_embeddings`, raise the
  base to `theta * (factor * L / max_pos - (factor - 1))^(d / (d - 2))`; shorter sequences are untouched.
- `llama3` (Llama 3.1, Dubey et al. 2024, https://arxiv.org/abs/2407.21783): keep high frequencies
  (wavelength < original_context / high_freq_factor), divide low frequencies by `factor`
  (wavelength > original_context / low_freq_factor), and interpolate smoothly in between.

The formulas follow `transformers.modeling_rope_utils` so logits match Hugging Face.
"""

from __future__ import annotations

import math

import torch

from llmlab.models.llama.config import LlamaConfig


def rope_inv_freq(config: LlamaConfig, seq_len: int | None = None) -> torch.Tensor:
    """Inverse frequencies (head_dim / 2,) for `config`; `seq_len` (total positions) matters only for `dynamic`."""
    dim = config.resolved_head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim  # (hs/2,)
    base = float(config.rope_theta)
    kind = config.rope_type
    scaling = config.rope_scaling or {}
    if kind == "dynamic":
        max_pos = config.max_position_embeddings
        length = max(seq_len or max_pos, max_pos)
        factor = float(scaling["factor"])
        base = base * ((factor * length / max_pos) - (factor - 1)) ** (dim / (dim - 2))
    inv_freq = 1.0 / (base**exponents)
    if kind == "linear":
        inv_freq = inv_freq / float(scaling["factor"])
    elif kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        old_len = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > old_len / low, inv_freq / factor, inv_freq)  # low frequencies: / factor
        smooth = (old_len / wavelen - low) / (high - low)  # 0 at the low edge, 1 at the high edge
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < old_len / high) & ~(wavelen > old_len / low)
        inv_freq = torch.where(medium, smoothed, scaled)
    return inv_freq


def rope_cos_sin_at(inv_freq: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables in the HF "rotate-half" layout for the given positions.

    Args:
        inv_freq: (hs/2,) inverse frequencies.
        positions: (T,) or (B, T) integer positions.

    Returns:
        cos, sin: (T, hs) for 1-D positions, (B, 1, T, hs) for 2-D ones (broadcast over heads), float32.
    """
    freqs = positions.float()[..., None] * inv_freq.to(positions.device)  # (..., T, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (..., T, hs)
    cos, sin = emb.cos(), emb.sin()
    if positions.ndim == 2:
        cos, sin = cos[:, None], sin[:, None]  # (B, 1, T, hs)
    return cos, sin
