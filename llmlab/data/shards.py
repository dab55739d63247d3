"""Token shards: a flat binary file of token ids (`train.bin`, `val.bin`) read back as a numpy memmap.

The same format as nanoGPT's `prepare.py`: no header, ids back to back, uint16 when every id fits
(vocabulary <= 65536) else uint32. The dtype and the number of tokens are recorded in `meta.json`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

UINT16_MAX_VOCAB = 1 << 16


def choose_dtype(vocab_size: int, requested: str = "auto") -> np.dtype:
    """The shard dtype for a vocabulary: uint16 if it fits, else uint32.

    Raises:
        ValueError: `requested` is uint16 but the vocabulary does not fit, or an unknown dtype.
    """
    if requested == "auto":
        return np.dtype(np.uint16 if vocab_size <= UINT16_MAX_VOCAB else np.uint32)
    if requested == "uint16":
        if vocab_size > UINT16_MAX_VOCAB:
            raise ValueError(
                f"vocab_size {vocab_size} does not fit in uint16 shards (at most {UINT16_MAX_VOCAB} ids); "
                "use dtype=uint32 or dtype=auto"
            )
        return np.dtype(np.uint16)
    if requested == "uint32":
        return np.dtype(np.uint32)
    raise ValueError(f"unknown shard dtype '{requested}'; choose auto, uint16 or uint32")


class ShardWriter:
    """Append token ids to a binary shard file; `close()` returns the number of tokens written.

    Args:
        path: the file to write.
        dtype: uint16 or uint32 (see `choose_dtype`).
        vocab_size: ids must be below it (checked, so a wrong tokenizer cannot silently wrap around).
    """

    def __init__(self, path: str | os.PathLike, dtype: np.dtype, vocab_size: int) -> None:
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.vocab_size = vocab_size
        self.count = 0
        self._f = self.path.open("wb")

    def write(self, ids: Iterable[int] | np.ndarray) -> None:
        arr = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        if arr.size == 0:
            return
        if arr.min() < 0 or arr.max() >= self.vocab_size:
            raise ValueError(f"token id {int(arr.max())} outside the vocabulary of {self.vocab_size} ids")
        arr.astype(self.dtype).tofile(self._f)
        self.count += int(arr.size)

    def close(self) -> int:
        self._f.close()
        return self.count

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._f.close()


def write_shard(path: str | os.PathLike, ids: Iterable[int] | np.ndarray, dtype: np.dtype, vocab_size: int) -> int:
    """Write one shard at once; returns the number of tokens."""
    with ShardWriter(path, dtype, vocab_size) as w:
        w.write(ids)
    return w.count


def read_shard(path: str | os.PathLike, dtype: np.dtype | str) -> np.ndarray:
    """Memory-map a shard read-only (an empty file gives an empty array).

    Raises:
        FileNotFoundError: no such file.
        ValueError: its size is not a multiple of the dtype's size (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"token shard not found: {path} (run `llmlab data prepare` first)")
    size, itemsize = path.stat().st_size, np.dtype(dtype).itemsize
    if size % itemsize:
        raise ValueError(
            f"token shard {path} has {size} bytes, not a multiple of {itemsize} ({np.dtype(dtype).name}): it is "
            "truncated or meta.json names the wrong dtype; prepare the corpus again with `llmlab data prepare`"
        )
    if size == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r")
