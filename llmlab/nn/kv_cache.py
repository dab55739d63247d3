"""A preallocated key/value cache for fast autoregressive decoding.

During generation every new token only needs its own query; the keys and values of earlier tokens are
stored here instead of being recomputed. See "Efficiently Scaling Transformer Inference" (Pope et al.,
2022, https://arxiv.org/abs/2211.05102) for the memory/speed trade-off.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values for every layer, preallocated to `max_len` positions.

    Protocol: during one model forward each attention layer calls `update(layer_idx, k, v)` with the keys
    and values of the T new tokens; the model calls `advance(T)` once at the end. `seq_len` is the number
    of tokens already cached, so the new tokens sit at positions `seq_len .. seq_len + T - 1`.

    Args:
        n_layer: number of attention layers.
        batch_size: batch size B used for decoding.
        max_len: maximum number of positions the cache holds.
        n_kv_head: number of key/value heads (fewer than query heads with GQA/MQA).
        head_dim: size of one head.
        dtype: storage dtype.
        device: storage device.
    """

    def __init__(
        self,
        n_layer: int,
        batch_size: int,
        max_len: int,
        n_kv_head: int,
        head_dim: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (n_layer, batch_size, n_kv_head, max_len, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)  # (L, B, nkv, max_len, hs)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.seq_len = 0

    @property
    def batch_size(self) -> int:
        return self.k.shape[1]

    def update(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store the new keys/values (B, nkv, T, hs) of one layer; return all keys/values so far (B, nkv, S, hs)."""
        t = k.shape[2]
        end = self.seq_len + t
        if end > self.max_len:
            raise ValueError(
                f"KV cache is full: {self.seq_len} cached + {t} new tokens > max_len={self.max_len}; "
                "create the cache with a larger max_len"
            )
        self.k[layer_idx, :, :, self.seq_len : end] = k
        self.v[layer_idx, :, :, self.seq_len : end] = v
        return self.k[layer_idx, :, :, :end], self.v[layer_idx, :, :, :end]

    def advance(self, n: int) -> None:
        """Mark `n` more tokens as cached (called once per model forward, after all layers)."""
        self.seq_len += n

    def crop(self, n: int) -> None:
        """Keep only the first `n` cached tokens (0 <= n <= seq_len); later entries are overwritten next time.

        Used to reuse a cache for a prompt that shares its first `n` tokens with what is cached (multi-turn
        chat, as llama.cpp's server does) or to drop rejected speculative tokens.
        """
        if not 0 <= n <= self.seq_len:
            raise ValueError(f"cannot crop the KV cache to {n} tokens: it holds {self.seq_len}; use 0..{self.seq_len}")
        self.seq_len = n

    def reorder(self, rows: torch.Tensor) -> None:
        """Make row i hold what row `rows[i]` holds (beam search: surviving beams take their parent's entries)."""
        self.k = self.k.index_select(1, rows)  # (L, B, nkv, max_len, hs)
        self.v = self.v.index_select(1, rows)

    def copy_from(self, other: KVCache) -> None:
        """Take over the `other.seq_len` cached tokens of `other` (same layers/heads/batch; this one may be larger).

        Used to grow a cache: allocate a larger one and copy the cached prefix into it.
        """
        n = other.seq_len
        if n > self.max_len or other.k.shape[:3] != self.k.shape[:3]:
            raise ValueError(
                f"cannot copy a KV cache of {n} tokens and shape {tuple(other.k.shape)} into one of max_len "
                f"{self.max_len} and shape {tuple(self.k.shape)}; allocate a matching cache"
            )
        self.k[:, :, :, :n] = other.k[:, :, :, :n]  # (L, B, nkv, n, hs)
        self.v[:, :, :, :n] = other.v[:, :, :, :n]
        self.seq_len = n

    def reset(self) -> None:
        """Forget every cached token (the storage is kept)."""
        self.seq_len = 0
