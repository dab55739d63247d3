"""Attention masks: causal, sliding-window + global tokens (Longformer), padding and ALiBi bias.

The model builds one mask per forward and shares it between all layers. When plain causal (or full)
attention is enough, no mask tensor is built at all and the fast `is_causal` kernel path is used.

A caller may also pass its own 4-D bool mask (B, 1, T, S) (True = may attend), e.g. the block-diagonal mask
of packed sequences (Krell et al. 2021, https://arxiv.org/abs/2107.02027); it is AND-ed with the model's own
causal / sliding-window mask.
"""

from __future__ import annotations

import torch

from llmlab.nn.positions import alibi_bias


def build_attention_mask(
    q_len: int,
    k_len: int,
    *,
    causal: bool,
    window_size: int | None = None,
    n_global_tokens: int = 0,
    key_padding_mask: torch.Tensor | None = None,
    alibi_slopes: torch.Tensor | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor | None, bool]:
    """Build the attention mask for `q_len` new queries against `k_len` keys (the last q_len are the queries).

    Sliding-window (local) attention follows Longformer (Beltagy et al., https://arxiv.org/abs/2004.05150):
    a causal query i sees keys j with `i - window_size < j <= i`; a non-causal one keys with
    `|i - j| < window_size`. The first `n_global_tokens` positions are global: every query may attend to them
    and they attend to every key (both still subject to causality).

    Args:
        q_len: number of queries T.
        k_len: number of keys S (cached + new), S >= T.
        causal: forbid attention to later positions.
        window_size: local attention window, or None for full attention.
        n_global_tokens: number of leading global positions (local attention only).
        key_padding_mask: (B, S) with 1 for real tokens and 0 for padding, or a 4-D bool mask (B|1, 1, T, S)
            with True where a query may attend to a key (AND-ed with the causal/window mask), or None.
        alibi_slopes: (nh,) ALiBi slopes, or None.
        device: device of the mask.
        dtype: dtype of an additive (float) mask.

    Returns:
        (mask, is_causal). `mask` is None (use `is_causal`), a bool mask (1|B, 1, T, S) where True means
        "may attend", or an additive float mask (1|B, nh, T, S) with -inf at forbidden places when ALiBi is on.
        Every query row keeps at least its own position, so no softmax row is empty.
    """
    past = k_len - q_len
    explicit = (
        window_size is not None
        or alibi_slopes is not None
        or key_padding_mask is not None
        or (causal and past > 0 and q_len > 1)
    )
    if not explicit:
        return None, causal and past == 0 and q_len > 1
    q_pos = torch.arange(past, k_len, device=device)  # (T,)
    k_pos = torch.arange(k_len, device=device)  # (S,)
    dist = q_pos[:, None] - k_pos[None, :]  # (T, S), i - j
    allowed = torch.ones(q_len, k_len, dtype=torch.bool, device=device)
    if causal:
        allowed &= dist >= 0
    if window_size is not None:
        in_window = dist < window_size if causal else dist.abs() < window_size
        if n_global_tokens > 0:
            glob = (k_pos[None, :] < n_global_tokens) | (q_pos[:, None] < n_global_tokens)
            in_window = in_window | glob
        allowed &= in_window
    allowed = allowed[None, None]  # (1, 1, T, S)
    if key_padding_mask is not None and key_padding_mask.dim() == 4:
        _check_4d_mask(key_padding_mask, q_len, k_len)
        allowed = allowed & key_padding_mask.to(device)  # (B, 1, T, S)
        allowed = allowed | (dist == 0)  # a query always sees itself: no empty softmax rows
    elif key_padding_mask is not None:
        if key_padding_mask.dim() != 2:
            raise ValueError(
                f"attention_mask must be (B, S) 1/0 padding or a (B, 1, T, S) bool mask, got shape "
                f"{tuple(key_padding_mask.shape)}"
            )
        if key_padding_mask.shape[-1] != k_len:
            raise ValueError(
                f"attention_mask covers {key_padding_mask.shape[-1]} positions but there are {k_len} keys "
                "(with a KV cache pass the mask of the cached + new tokens)"
            )
        allowed = allowed & key_padding_mask.bool()[:, None, None, :]  # (B, 1, T, S)
        allowed = allowed | (dist == 0)  # a padded query still sees itself: no empty softmax rows
    if alibi_slopes is None:
        return allowed, False
    bias = alibi_bias(alibi_slopes.to(device), q_pos, k_pos, causal=causal)  # (1, nh, T, S)
    return bias.masked_fill(~allowed, float("-inf")).to(dtype), False


def _check_4d_mask(mask: torch.Tensor, q_len: int, k_len: int) -> None:
    """Raise ValueError unless `mask` is a bool (B|1, 1, T, S) mask for `q_len` queries and `k_len` keys."""
    if mask.dtype != torch.bool:
        raise ValueError(f"a 4-D attention_mask must be bool (True = attend), got {mask.dtype}; pass mask.bool()")
    if mask.shape[1] != 1 or mask.shape[2] != q_len or mask.shape[3] != k_len:
        raise ValueError(
            f"a 4-D attention_mask must have shape (B, 1, {q_len}, {k_len}) (queries x cached + new keys), "
            f"got {tuple(mask.shape)}"
        )
