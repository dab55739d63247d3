"""The cleaned corpus on disk while `llmlab data prepare` runs, and its train/val split.

`Spool` writes the text of the cleaned documents back to back to one UTF-8 file and remembers each
document's length in bytes and characters (16 bytes per document in memory), so the later passes (tokenizer
training, encoding) read the corpus again in bounded blocks instead of holding it.

`SplitPlan` decides which documents (or, in `tail` mode, which characters) go to train and val — the
semantics of `SplitConfig`: `tail` = the last `val_fraction` of the characters (the document on the
boundary is cut in two, nanoGPT's `data[:int(n*0.9)]`), `random` = a seeded random `val_fraction` of whole
documents, `auto` = `random` from 10 documents on, else `tail`.
"""

from __future__ import annotations

import codecs
import os
import random
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class Spool:
    """Append-only store of document texts in one file (see the module docstring).

    Args:
        path: the file to create (deleted by `remove`).
        block_chars: the size of the text blocks `document_blocks` yields.
    """

    def __init__(self, path: str | os.PathLike, block_chars: int) -> None:
        self.path = Path(path)
        self.block_chars = block_chars
        self.doc_bytes = array("q")
        self.doc_chars = array("q")
        self._f = self.path.open("wb")

    def add(self, pieces: Iterable[str]) -> bool:
        """Append one document given in pieces; False (and nothing stored) when it is empty."""
        n_bytes = n_chars = 0
        for piece in pieces:
            data = piece.encode("utf-8")
            self._f.write(data)
            n_bytes += len(data)
            n_chars += len(piece)
        if n_chars:
            self.doc_bytes.append(n_bytes)
            self.doc_chars.append(n_chars)
        return n_chars > 0

    def close(self) -> None:
        self._f.close()

    def remove(self) -> None:
        self._f.close()
        self.path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self.doc_chars)

    def documents(self) -> Iterator[Iterator[str]]:
        """Each document, in order, as an iterator of text blocks of at most `block_chars` characters.

        Consume a document's blocks before asking for the next one.
        """
        read_bytes = max(4 * self.block_chars, 1 << 16)
        with self.path.open("rb") as f:
            for n_bytes in self.doc_bytes:
                yield _decoded_blocks(f, n_bytes, read_bytes, self.block_chars)


def _decoded_blocks(f, n_bytes: int, read_bytes: int, block_chars: int) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder("utf-8")()
    left = n_bytes
    while left:
        data = f.read(min(read_bytes, left))
        left -= len(data)
        text = decoder.decode(data, final=left == 0)
        for start in range(0, len(text), block_chars):
            yield text[start : start + block_chars]


@dataclass
class SplitPlan:
    """Where each document goes. `tail`: documents before `cut_doc` to train, after it to val, and the first
    `cut_chars` characters of document `cut_doc` to train, the rest to val (`cut_doc` -1: all train).
    `random`: the documents in `val_docs` to val, the others to train."""

    mode: str
    val_docs: set[int] = field(default_factory=set)
    cut_doc: int = -1
    cut_chars: int = 0

    def route(self, index: int) -> str:
        """'train', 'val' or 'both' (the boundary document of a tail split) for document `index`."""
        if self.mode == "random":
            return "val" if index in self.val_docs else "train"
        if self.cut_doc < 0 or index < self.cut_doc:
            return "train"
        return "both" if index == self.cut_doc and self.cut_chars > 0 else "val"


def split_plan(doc_chars: Sequence[int], mode: str, val_fraction: float, seed: int) -> SplitPlan:
    """The train/val split of documents of these lengths (see the module docstring).

    Raises:
        ValueError: `random` with fewer than 2 documents.
    """
    if mode == "auto":
        mode = "random" if len(doc_chars) >= 10 else "tail"
    if val_fraction == 0:
        return SplitPlan(mode)
    if mode == "tail":
        cut = int(sum(doc_chars) * (1 - val_fraction))  # nanoGPT: train = data[:int(n*0.9)]
        seen = 0
        for i, n in enumerate(doc_chars):
            if seen + n > cut:  # the first document that reaches into val
                return SplitPlan(mode, cut_doc=i, cut_chars=cut - seen)
            seen += n
        return SplitPlan(mode)
    if len(doc_chars) < 2:
        raise ValueError(
            f"split.mode=random needs at least 2 documents, the corpus has {len(doc_chars)}; "
            "use split.mode=tail or documents=paragraph"
        )
    order = list(range(len(doc_chars)))
    random.Random(seed).shuffle(order)
    n_val = min(len(doc_chars) - 1, max(1, round(len(doc_chars) * val_fraction)))
    return SplitPlan(mode, val_docs=set(order[:n_val]))


def split_documents(texts: list[str], mode: str, val_fraction: float, seed: int) -> tuple[list[str], list[str], str]:
    """Apply `split_plan` to texts held in memory; returns (train, val, mode used)."""
    plan = split_plan([len(t) for t in texts], mode, val_fraction, seed)
    train, val = [], []
    for i, text in enumerate(texts):
        where = plan.route(i)
        if where == "both":
            train.append(text[: plan.cut_chars])
            val.append(text[plan.cut_chars :])
        else:
            (val if where == "val" else train).append(text)
    return train, val, plan.mode
