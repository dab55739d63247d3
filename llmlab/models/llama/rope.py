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
from typing import Any

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


# ----------------------------------------------------------------------------------- llama3 in GGUF files
# llama.cpp does not store llama3 scaling as parameters: its converter writes the per-frequency divisors
# `rope_freqs.weight` (head_dim / 2,) and llama.cpp divides each frequency by them. `llama3_freq_factors` computes
# that tensor (as `convert_hf_to_gguf.py` does); `llama3_scaling_from_factors` recovers parameters that give it.
LLAMA_CPP_ORIGINAL_CONTEXT = 8192  # what llama.cpp's converter assumes when the HF config has no top-level value


def _base_inv_freq(rope_theta: float, head_dim: int) -> torch.Tensor:
    exponents = torch.arange(0, head_dim, 2, dtype=torch.int64).double() / head_dim
    return 1.0 / (float(rope_theta) ** exponents)  # (hs/2,) float64


def llama3_freq_factors(config: LlamaConfig) -> torch.Tensor:
    """(hs/2,) float32 divisors r with `scaled inv_freq = inv_freq / r` for a llama3-scaled config."""
    s = config.rope_scaling or {}
    return _llama3_factors(
        _base_inv_freq(config.rope_theta, config.resolved_head_dim),
        float(s["factor"]),
        float(s["low_freq_factor"]),
        float(s["high_freq_factor"]),
        float(s["original_max_position_embeddings"]),
    ).float()


def _llama3_factors(inv_freq: torch.Tensor, factor: float, low: float, high: float, old_len: float) -> torch.Tensor:
    wavelen = 2 * math.pi / inv_freq
    smooth = (old_len / wavelen - low) / (high - low)
    medium = 1.0 / ((1 - smooth) / factor + smooth)
    factors = torch.where(wavelen > old_len / low, torch.full_like(inv_freq, factor), medium)
    return torch.where(wavelen < old_len / high, torch.ones_like(inv_freq), factors)


def llama3_scaling_from_factors(
    factors: torch.Tensor, rope_theta: float, head_dim: int, original_context: int = LLAMA_CPP_ORIGINAL_CONTEXT
) -> dict[str, Any] | None:
    """A llama3 `rope_scaling` dict whose frequency divisors equal `factors` (None when all are 1).

    Divisors are 1 for high frequencies, `factor` for low ones and `1 / ((1 - s) / factor + s)` in between,
    where `s = (original_context / wavelength - low) / (high - low)` is linear in 1 / wavelength: a straight-line
    fit through the in-between points gives `low` and `high` for the given `original_context`. The result is
    checked by recomputing the divisors.

    Raises:
        ValueError: no llama3 parameters reproduce `factors`.
    """
    r = factors.detach().double().flatten()
    inv_freq = _base_inv_freq(rope_theta, head_dim)
    if r.shape != inv_freq.shape:
        raise ValueError(f"rope_freqs has {r.numel()} values, expected head_dim / 2 = {inv_freq.numel()}")
    factor = float(r.max())
    if abs(factor - 1.0) < 1e-6:
        return None
    wavelen = 2 * math.pi / inv_freq
    ones, fulls = (r - 1).abs() < 1e-5, (r - factor).abs() < 1e-5 * factor
    mid = ~ones & ~fulls
    length = float(original_context)
    if int(mid.sum()) >= 2:  # s = a / wavelength + b with a = L / (high - low), b = -low / (high - low)
        s = (1 / r[mid] - 1 / factor) / (1 - 1 / factor)
        x = 1 / wavelen[mid]
        a, b = torch.linalg.lstsq(torch.stack([x, torch.ones_like(x)], 1), s[:, None]).solution.flatten().tolist()
        low = -b * length / a
        high = low + length / a
    elif int(mid.sum()) == 1:  # one point: keep Llama 3's low_freq_factor = 1
        s = float((1 / r[mid] - 1 / factor) / (1 - 1 / factor))
        low, high = 1.0, 1.0 + (length / float(wavelen[mid]) - 1.0) / s
    else:  # no point in between: put both edges between the last divisor 1 and the first divisor `factor`
        w_hi = float(wavelen[ones].max()) if bool(ones.any()) else float(wavelen.min()) / 2
        w_lo = float(wavelen[fulls].min())
        low, high = length / (w_hi + 2 * (w_lo - w_hi) / 3), length / (w_hi + (w_lo - w_hi) / 3)
    scaling = {
        "rope_type": "llama3",
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": int(original_context),
    }
    if not high > low > 0 or not torch.allclose(_llama3_factors(inv_freq, factor, low, high, length), r, rtol=1e-4):
        raise ValueError("rope_freqs.weight is not a llama3 RoPE scaling that llmlab can express")
    return scaling
