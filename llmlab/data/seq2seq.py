"""Seq2seq data: JSONL records {"source": ..., "target": ...} -> token-id pairs -> padded batches.

    records = read_seq2seq_jsonl("train.jsonl")
    examples = encode_seq2seq(records, tokenizer, max_source_length=256, max_target_length=64, eos_id=1)
    stream = Seq2SeqBatchStream(examples, batch_size=16, pad_id=0, seed=0)
    batch = stream.next_batch()   # input_ids (B, S), attention_mask (B, S), labels (B, T) with -100 padding

Both sides end with EOS (as T5's and BART's tokenizers add it); the source is cut to `max_source_length`, the
target to `max_target_length` tokens, EOS included. Labels are the target ids; padding positions are -100, so
the loss is over target tokens only (the decoder inputs are `shift_right(labels)`, built by the model).
The stream is an endless sequence of seeded shuffled epochs whose position (`state_dict`) makes resume exact.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Seq2SeqExample:
    """One tokenized pair (both sides end with EOS)."""

    source_ids: tuple[int, ...]
    target_ids: tuple[int, ...]


def read_seq2seq_jsonl(path: str | os.PathLike) -> list[dict[str, str]]:
    """The records of a JSONL file of {"source": str, "target": str} objects (other keys are kept).

    Raises:
        FileNotFoundError: no such file.
        ValueError: one line naming the file, line number and what is wrong (or an empty file).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"seq2seq data file not found: {p}")
    records = []
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{n}: not valid JSON ({e.msg}); write one JSON object per line") from None
            ok = isinstance(rec, dict) and all(isinstance(rec.get(k), str) and rec[k] for k in ("source", "target"))
            if not ok:
                raise ValueError(f'{p}:{n}: expected {{"source": "...", "target": "..."}} with non-empty strings')
            records.append(rec)
    if not records:
        raise ValueError(f"{p} holds no records; write one {{\"source\", \"target\"}} object per line")
    return records


def encode_seq2seq(
    records: Sequence[dict[str, str]],
    tokenizer: Any,
    max_source_length: int,
    max_target_length: int,
    eos_id: int,
    source_prefix: str = "",
) -> list[Seq2SeqExample]:
    """Tokenize every record: `source_prefix + source` and `target`, each cut to its length with EOS last."""
    sources = tokenizer.encode_batch([source_prefix + r["source"] for r in records])
    targets = tokenizer.encode_batch([r["target"] for r in records])
    return [
        Seq2SeqExample(tuple(s[: max_source_length - 1]) + (eos_id,), tuple(t[: max_target_length - 1]) + (eos_id,))
        for s, t in zip(sources, targets, strict=True)
    ]


def collate_seq2seq(examples: Sequence[Seq2SeqExample], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids/attention_mask (B, S_max) and labels (B, T_max) padded with -100."""
    s = max(len(e.source_ids) for e in examples)
    t = max(len(e.target_ids) for e in examples)
    input_ids = torch.full((len(examples), s), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(examples), s), dtype=torch.long)
    labels = torch.full((len(examples), t), IGNORE_INDEX, dtype=torch.long)
    for i, e in enumerate(examples):
        input_ids[i, : len(e.source_ids)] = torch.tensor(e.source_ids)
        attention_mask[i, : len(e.source_ids)] = 1
        labels[i, : len(e.target_ids)] = torch.tensor(e.target_ids)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def eval_batches(examples: Sequence[Seq2SeqExample], batch_size: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """The examples in order, `batch_size` at a time."""
    for i in range(0, len(examples), batch_size):
        yield collate_seq2seq(examples[i : i + batch_size], pad_id)


def examples_fingerprint(examples: Sequence[Seq2SeqExample]) -> str:
    """sha256 of the tokenized pairs (a resumed run must train on the same data)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.source_ids, e.target_ids]).encode())
    return h.hexdigest()


class Seq2SeqBatchStream:
    """Endless batches of shuffled epochs (epoch k uses permutation seed `seed + k`).

    Under data parallelism rank r takes rows r, r + N, ... of each global batch of `batch_size * N` rows.
    `state_dict()` / `load_state_dict()` hold the epoch and position, for exact resume.
    """

    def __init__(
        self, examples: Sequence[Seq2SeqExample], batch_size: int, pad_id: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if not examples:
            raise ValueError("no training examples; check data.train")
        self.examples, self.batch_size, self.pad_id, self.seed = list(examples), batch_size, pad_id, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.pos = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.examples), generator=g).tolist()

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's rows of the next global batch (wrapping into the next epoch)."""
        rows: list[int] = []
        while len(rows) < self.batch_size * self.world_size:
            if self.pos >= len(self._order):
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            rows.append(self._order[self.pos])
            self.pos += 1
        mine = rows[self.rank :: self.world_size]
        return collate_seq2seq([self.examples[i] for i in mine], self.pad_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])
        self._order = self._permutation(self.epoch)
