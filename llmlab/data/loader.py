"""Read prepared token shards and cut them into (input, target) windows for language-model training.

`RandomWindowLoader` samples random windows like nanoGPT's `get_batch`: x = tokens[i : i+T] and
y = tokens[i+1 : i+T+1] (the next token at every position). Its generator state and step count can be
saved and restored, so a resumed run sees exactly the batches it would have seen. Under data parallelism
every rank draws the offsets of the whole global batch from the same seeded generator and keeps its own
rows, so N ranks with batch B see exactly the windows one process with batch N*B sees.

`SequentialLoader` walks a split in order with non-overlapping windows (for validation / perplexity).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from llmlab.data.shards import read_shard


class TokenDataset:
    """One split (`train` or `val`) of a prepared corpus folder (`llmlab data prepare` output).

    Attributes:
        tokens: read-only np.memmap of the token ids, shape (N,).
        vocab_size: from meta.json.
        meta: the whole meta.json.
    """

    def __init__(self, out_dir: str | os.PathLike, split: str = "train") -> None:
        self.dir = Path(out_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"no meta.json in {self.dir}; run `llmlab data prepare --out {self.dir}` first")
        self.meta: dict[str, Any] = json.loads(meta_path.read_text(encoding="utf-8"))
        self.split = split
        self.tokens: np.ndarray = read_shard(self.dir / f"{split}.bin", self.meta["dtype"])
        self.vocab_size: int = int(self.meta["vocab_size"])

    @property
    def tokenizer_path(self) -> Path:
        return self.dir / self.meta.get("tokenizer", "tokenizer.json")

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return (
            f"TokenDataset({str(self.dir)!r}, split={self.split!r}, tokens={len(self)}, vocab_size={self.vocab_size})"
        )


def _windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    idx = starts[:, None] + np.arange(block_size + 1)  # (B, T+1)
    chunk = torch.from_numpy(np.asarray(tokens[idx]).astype(np.int64))  # (B, T+1)
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()  # (B, T), (B, T)


class RandomWindowLoader:
    """Random (x, y) windows of `block_size` tokens; see the module docstring.

    Args:
        dataset: the split to sample from.
        batch_size: rows per batch on this rank (B).
        block_size: tokens per row (T).
        seed: seeds the generator; must be the same on all ranks.
        rank, world_size: this process's slice of the global batch (rows [rank*B, (rank+1)*B)).
    """

    def __init__(
        self, dataset: TokenDataset, batch_size: int, block_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, world_size={world_size})")
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}")
        if len(dataset) < block_size + 1:
            raise ValueError(
                f"the {dataset.split} split has {len(dataset)} tokens, fewer than block_size + 1 = {block_size + 1}; "
                "use a smaller block_size or more data"
            )
        self.dataset = dataset
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.generator = torch.Generator().manual_seed(seed)
        self.step = 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next (x, y), both LongTensors of shape (B, T), y[:, t] == x[:, t+1] within a row."""
        n_global = self.world_size * self.batch_size
        high = len(self.dataset) - self.block_size  # last valid start + 1
        starts = torch.randint(high, (n_global,), generator=self.generator).numpy()  # the global batch
        mine = starts[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        self.step += 1
        return _windows(self.dataset.tokens, mine, self.block_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue with exactly the same batches."""
        return {"step": self.step, "seed": self.seed, "rng_state": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.seed = int(state.get("seed", self.seed))
        self.generator.set_state(torch.as_tensor(state["rng_state"], dtype=torch.uint8))


class SequentialLoader:
    """Non-overlapping windows of a split in order: rows start at 0, T, 2T, ... (a partial last batch).

    Args:
        dataset: the split (usually `val`).
        batch_size: rows per batch.
        block_size: tokens per row (T).
        max_batches: stop after this many batches (None = the whole split).
    """

    def __init__(self, dataset: TokenDataset, batch_size: int, block_size: int, max_batches: int | None = None) -> None:
        if batch_size < 1 or block_size < 1:
            raise ValueError(f"batch_size and block_size must be >= 1, got {batch_size} and {block_size}")
        self.dataset = dataset
        self.batch_size, self.block_size, self.max_batches = batch_size, block_size, max_batches
        self.n_windows = max(0, (len(dataset) - 1) // block_size)  # each needs T+1 tokens (targets)
        if self.n_windows == 0:
            raise ValueError(
                f"the {dataset.split} split has {len(dataset)} tokens, too few for one window of "
                f"block_size + 1 = {block_size + 1}"
            )

    def __len__(self) -> int:
        n = -(-self.n_windows // self.batch_size)
        return n if self.max_batches is None else min(n, self.max_batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts = np.arange(self.n_windows, dtype=np.int64) * self.block_size
        for b in range(len(self)):
            yield _windows(
                self.dataset.tokens, starts[b * self.batch_size : (b + 1) * self.batch_size], self.block_size
            )
