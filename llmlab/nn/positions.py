"""Position information: sinusoidal tables, rotary embeddings (RoPE) and ALiBi slopes.

Learned absolute positions are a plain `nn.Embedding` (`transformer.wpe`) built by the model.
"""

from __future__ import annotations

import math

import torch

POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos position table of "Attention Is All You Need" (https://arxiv.org/abs/1706.03762).

    `PE[p, 2i] = sin(p / 10000^(2i/d))`, `PE[p, 2i+1] = cos(p / 10000^(2i/d))`.

    Returns:
        (n_pos, dim) float32 tensor.
    """
    pos = torch.arange(n_pos, dtype=torch.float32).unsqueeze(1)  # (P, 1)
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))  # (ceil(d/2),)
    table = torch.zeros(n_pos, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div[: dim // 2])
    return table


def rope_cos_sin(n_pos: int, head_dim: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables for rotary embeddings, RoFormer (Su et al., https://arxiv.org/abs/2104.09864).

    Uses the HF Llama "rotate-half" layout: frequencies are repeated as `cat(freqs, freqs)` so the first half
    of each head pairs with the second half.

    Returns:
        cos, sin: (n_pos, head_dim) float32 tensors.
    """
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))  # (hs/2,)
    freqs = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # (P, hs/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (P, hs)
    return emb.cos(), emb.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate queries or keys x (B, nh, T, hs) by their positions; cos/sin are (T, hs)."""
    return (x * cos + rotate_half(x) * sin).to(x.dtype)


def alibi_slopes(n_head: int) -> torch.Tensor:
    """Per-head ALiBi slopes, Press et al. (https://arxiv.org/abs/2108.12409).

    For a power of two n the slopes are the geometric sequence 2^(-8/n), 2^(-16/n), ...; otherwise the
    slopes of the closest smaller power of two are followed by every other slope of the next one.

    Returns:
        (n_head,) float32 tensor.
    """

    def pow2_slopes(n: int) -> list[float]:
        start = 2 ** (-(2 ** -(math.log2(n) - 3)))
        return [start * start**i for i in range(n)]

    if math.log2(n_head).is_integer():
        slopes = pow2_slopes(n_head)
    else:
        closest = 2 ** math.floor(math.log2(n_head))
        slopes = pow2_slopes(closest) + pow2_slopes(2 * closest)[0::2][: n_head - closest]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_bias(slopes: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Additive attention bias `-slope * distance` (ALiBi).

    Args:
        slopes: (nh,) per-head slopes.
        q_pos: (T,) absolute positions of the queries.
        k_pos: (S,) absolute positions of the keys.
        causal: causal models use `j - i` (<= 0 for visible keys); encoders use `-|i - j|`.

    Returns:
        (1, nh, T, S) float32 bias.
    """
    rel = (k_pos[None, :] - q_pos[:, None]).float()  # (T, S)
    if not causal:
        rel = -rel.abs()
    return (slopes[:, None, None] * rel).unsqueeze(0)  # (1, nh, T, S)


def relative_position_bucket(
    relative_position: torch.Tensor, bidirectional: bool = True, num_buckets: int = 32, max_distance: int = 128
) -> torch.Tensor:
    """T5's bucket of each relative position `key - query` (Raffel et al., https://arxiv.org/abs/1910.10683).

    Half of the buckets (all of them for a causal decoder, which only sees the past) hold exact distances
    0 .. max_exact - 1; the rest cover distances up to `max_distance` logarithmically (farther ones share the
    last bucket). Bidirectional (encoder) buckets also tell whether the key lies before or after the query.

    Args:
        relative_position: (T, S) long tensor of `key_position - query_position`.
        bidirectional: encoder (True) or causal decoder (False).
        num_buckets: number of buckets (an embedding row per bucket and head).
        max_distance: distances from here on share the last bucket.

    Returns:
        (T, S) long bucket ids in [0, num_buckets).
    """
    buckets = torch.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets += (relative_position > 0).long() * num_buckets
        distance = relative_position.abs()
    else:
        distance = -torch.clamp(relative_position, max=0)  # only the past: >= 0
    max_exact = num_buckets // 2
    is_small = distance < max_exact
    log_ratio = torch.log(distance.float() / max_exact) / math.log(max_distance / max_exact)
    large = max_exact + (log_ratio * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, distance, large)
