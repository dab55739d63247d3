"""`SlotCache`: one shared `KVCache` whose batch rows are slots that sequences enter and leave independently.

All rows share one write head (`KVCache.seq_len`): a decode step writes every row's new key/value at
column `head`. Each slot keeps the length n of its sequence, and its cached keys/values always occupy the
n columns just before the head, `[head - n, head)` — contiguous and right-aligned, like a left-padded batch
(`llmlab.generate.batch`) whose padding is whatever stale entries lie to the left:

    head = 6        columns 0 1 2 3 4 5 | 6 (this step's write)       attention_mask   position_ids
    slot 0, n=4         .  .  a  b  c  d | e                          0 0 1 1 1 1 1     4
    slot 1, n=6         f  g  h  i  j  k | l                          1 1 1 1 1 1 1     6
    slot 2, free        .  .  .  .  .  . | pad                        0 0 0 0 0 0 1     0

Positions come from `position_ids` (a slot's own count), not from the column, so RoPE keys (rotated when
they were written), learned and sinusoidal positions are exact; because every slot's range is contiguous and
ends at the head, the distance between two of its tokens equals their column distance, so ALiBi and
sliding-window attention are exact too. Moving a slot's range to other columns (`align`) changes nothing it
computes; the engine does it to make room: to fit a prompt longer than the head (shift right) and when the
head reaches `max_len` (compaction: shift left so the longest live sequence ends at the new head).

This is the "static slots + shared head" layout; paged blocks (vLLM's PagedAttention, Kwon et al., 2023,
https://arxiv.org/abs/2309.06180) avoid the copies and the stale columns at the cost of a custom attention.
"""

from __future__ import annotations

import copy

import torch

from llmlab.models.base import DecoderLM
from llmlab.nn.kv_cache import KVCache


class SlotCache:
    """`max_batch` slots of up to `max_len` cached tokens each, in one `KVCache` with a shared write head.

    Args:
        model: the decoder whose `make_kv_cache` sizes the storage.
        max_batch: number of slots (batch rows of every decode forward).
        max_len: columns of the cache (<= the model's context window).
    """

    def __init__(self, model: DecoderLM, max_batch: int, max_len: int) -> None:
        self.kv = model.make_kv_cache(max_batch, max_len)  # k, v: (L, max_batch, nkv, max_len, hs)
        self.lengths = torch.zeros(max_batch, dtype=torch.long)  # cached tokens per slot (0: free or empty)

    @property
    def head(self) -> int:
        """The column the next decode step writes (every live slot's range ends just before it)."""
        return self.kv.seq_len

    @property
    def max_len(self) -> int:
        return self.kv.max_len

    def align(self, new_head: int) -> None:
        """Move every slot's cached range so that it ends at `new_head` (>= the longest slot, <= max_len)."""
        longest = int(self.lengths.max())
        if not longest <= new_head <= self.max_len:
            raise ValueError(f"cannot align the slots to head {new_head}: use {longest}..{self.max_len}")
        head = self.head
        if new_head != head:
            for slot, n in enumerate(self.lengths.tolist()):
                if n:  # clone: source and destination overlap when the shift is shorter than the range
                    for store in (self.kv.k, self.kv.v):
                        store[:, slot, :, new_head - n : new_head] = store[:, slot, :, head - n : head].clone()
        self.kv.seq_len = new_head

    def make_room(self, n_new: int) -> None:
        """Make sure `n_new` more columns fit after the head; compact (shift left) when they do not."""
        if self.head + n_new > self.max_len:
            self.align(int(self.lengths.max()))
        if self.head + n_new > self.max_len:
            raise ValueError(
                f"a slot holds {int(self.lengths.max())} tokens and {n_new} more do not fit max_len={self.max_len}"
            )

    def trim(self) -> None:
        """Drop stale columns when they outnumber the live ones: with every live sequence (of at most `longest`
        tokens) ending at the head, columns before `head - longest` are attended by no slot yet cost every decode
        forward; shift left so the longest sequence starts at column 0 (an empty batch resets the head to 0)."""
        longest = int(self.lengths.max())
        if self.head - longest > max(longest, 16):
            self.align(longest)

    def place(self, slot: int, prefill: KVCache) -> None:
        """Copy the `prefill.seq_len` tokens of a one-row cache into `slot`, ending at the head (shift right first
        when the head is shorter than the prompt)."""
        n = prefill.seq_len
        if n > self.head:
            self.align(n)
        head = self.head
        self.kv.k[:, slot, :, head - n : head] = prefill.k[:, 0, :, :n]  # (L, nkv, n, hs)
        self.kv.v[:, slot, :, head - n : head] = prefill.v[:, 0, :, :n]
        self.lengths[slot] = n

    def release(self, slot: int) -> None:
        """Free `slot`: its columns become stale (masked out, overwritten later)."""
        self.lengths[slot] = 0

    def rows(self, n_rows: int) -> KVCache:
        """A `KVCache` over the first `n_rows` slots sharing this storage (a decode forward writes through it)."""
        view = copy.copy(self.kv)
        view.k, view.v = self.kv.k[:, :n_rows], self.kv.v[:, :n_rows]  # (L, n_rows, nkv, max_len, hs) views
        return view

    def decode_inputs(self, n_rows: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(attention_mask (R, head + 1), position_ids (R, 1)) for one new token per slot of the first R, at the head.

        A slot sees its own range and the new column; a free slot only the new column (its output is ignored).
        """
        head = self.head
        lengths = self.lengths[:n_rows]  # (R,)
        columns = torch.arange(head + 1)  # (S,)
        mask = (columns[None, :] >= (head - lengths)[:, None]).long()  # (R, S)
        return mask.to(device), lengths[:, None].clone().to(device)  # positions (R, 1): each slot's count

    def advance(self, slots: list[int]) -> None:
        """Move the head past the column a decode forward just wrote, counting it for each of `slots`."""
        self.kv.seq_len += 1
        self.lengths[slots] += 1
