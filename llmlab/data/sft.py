"""Supervised fine-tuning data: JSONL records -> token ids + loss labels -> padded or packed batches.

    examples = load_sft_examples("train.jsonl", tokenizer, template="alpaca", max_length=512)
    batch = SFTCollator(pad_id=tokenizer.pad_id)(examples[:8])
    # batch["input_ids"], batch["labels"], batch["attention_mask"]: (B, T); labels are -100 where no loss

Labels follow llmlab's convention (as `RandomWindowLoader`'s `y`): `labels[t]` is the token the model should
predict *at* position t, i.e. `input_ids[t + 1]`, or -100 (ignored). With `train_on_prompt=False` (the
default, as in Alpaca/Vicuna SFT) only response tokens are predicted: the first response token is the label
of the last prompt position, and the EOS appended after the response is the label of the last response token,
so the model learns where an answer ends. The last position of an example predicts nothing.

Packing (Krell et al. 2021, "Efficient Sequence Packing without Cross-contamination",
https://arxiv.org/abs/2107.02027) puts several examples into one row; `segment_ids` tell them apart, so the
attention mask can be block-diagonal (`block_causal_mask`) and positions can restart at 0 per example
(`position_ids`): a packed example is then computed exactly as if it were alone.
"""

from __future__ import annotations

import hashlib
import random
from array import array
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmlab.data.templates import Segment, render_record
from llmlab.io import read_jsonl_records

IGNORE_INDEX = -100


@dataclass
class SFTExample:
    """One tokenized example.

    Attributes:
        input_ids: the token ids (prompt, response, EOS).
        labels: same length; `labels[t]` = `input_ids[t + 1]` where that token is learned, else -100.
        task: index of the task (data set) it came from.
        line: line number in its JSONL file (for messages).
        prompt_len: number of tokens before the first response token.
    """

    input_ids: list[int]
    labels: list[int]
    task: int = 0
    line: int = 0
    prompt_len: int = 0

    def __len__(self) -> int:
        return len(self.input_ids)


# ---------------------------------------------------------------------------------------------- reading
def read_sft_records(
    path: str | Path, fmt: str = "auto", template: str = "alpaca", chat_template: str | None = None
) -> list[tuple[int, list[Segment]]]:
    """Read and render every record of a JSONL file: [(line number, segments)].

    Raises:
        ValueError: `<path> line 7: missing 'output'` (or another problem of that line), or an empty file.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    out = []
    for lineno, record in read_jsonl_records(path):
        try:
            out.append((lineno, render_record(record, fmt, template, chat_template)))
        except ValueError as e:
            raise ValueError(f"{path} line {lineno}: {e}") from None
    if not out:
        raise ValueError(f"{path} holds no records; add JSONL lines such as {{'instruction', 'input', 'output'}}")
    return out


# ---------------------------------------------------------------------------------------------- tokenizing
def tokenize_segments(
    segments: Sequence[Segment],
    tokenizer: Any,
    *,
    max_length: int,
    train_on_prompt: bool = False,
    add_bos: bool = False,
    add_eos: bool = True,
    task: int = 0,
    line: int = 0,
) -> SFTExample | None:
    """Token ids and labels of one rendered record (None when nothing learnable survives truncation).

    Each segment is tokenized on its own, so the prompt/response boundary is exact. EOS is appended unless the
    response already ends with it (chat templates whose end-of-turn token is EOS). Too-long examples are cut
    at `max_length` tokens (the end of the response is lost first).
    """
    ids: list[int] = []
    learn: list[bool] = []  # whether the token at this position is learned (predicted from the one before)
    if add_bos and tokenizer.bos_id is not None:
        ids.append(tokenizer.bos_id)
        learn.append(False)
    prompt_len: int | None = None
    for text, is_response in segments:
        piece = tokenizer.encode(text)
        if is_response and prompt_len is None:
            prompt_len = len(ids)
        ids += piece
        learn += [is_response or train_on_prompt] * len(piece)
    eos = tokenizer.eos_id
    if add_eos and eos is not None:
        if eos not in ids[len(ids) if prompt_len is None else prompt_len :]:
            ids.append(eos)
            learn.append(True)
    ids, learn = ids[:max_length], learn[:max_length]
    labels = [ids[t + 1] if learn[t + 1] else IGNORE_INDEX for t in range(len(ids) - 1)] + [IGNORE_INDEX]
    if all(lab == IGNORE_INDEX for lab in labels):
        return None
    return SFTExample(ids, labels, task, line, min(len(ids) if prompt_len is None else prompt_len, len(ids)))


def load_sft_examples(
    path: str | Path,
    tokenizer: Any,
    *,
    fmt: str = "auto",
    template: str = "alpaca",
    chat_template: str | None = None,
    max_length: int = 512,
    train_on_prompt: bool = False,
    add_bos: bool = False,
    add_eos: bool = True,
    task: int = 0,
) -> tuple[list[SFTExample], int]:
    """Read, render and tokenize a JSONL file: (examples, number dropped because nothing learnable was left)."""
    examples, dropped = [], 0
    for lineno, segments in read_sft_records(path, fmt, template, chat_template):
        ex = tokenize_segments(
            segments,
            tokenizer,
            max_length=max_length,
            train_on_prompt=train_on_prompt,
            add_bos=add_bos,
            add_eos=add_eos,
            task=task,
            line=lineno,
        )
        if ex is None:
            dropped += 1
        else:
            examples.append(ex)
    if not examples:
        raise ValueError(f"{path}: no example keeps a response token within max_length={max_length}; raise it")
    return examples, dropped


# ---------------------------------------------------------------------------------------------- batching
def collate_rows(
    rows: Sequence[Sequence[SFTExample]], pad_id: int, pad_to_multiple_of: int = 1
) -> dict[str, torch.Tensor]:
    """Right-pad rows of (one or more packed) examples into a batch.

    Returns:
        `input_ids`, `labels` (-100 on padding), `attention_mask` (1 = token, 0 = padding),
        `segment_ids` (1, 2, ... per example in the row, 0 on padding), `position_ids` (restarting at 0 per
        example), `task_ids` (the task of each token, -1 on padding); all (B, T) LongTensors.
    """
    t = max(sum(len(e) for e in row) for row in rows)
    t = -(-t // pad_to_multiple_of) * pad_to_multiple_of
    b = len(rows)
    input_ids = torch.full((b, t), pad_id, dtype=torch.long)
    labels = torch.full((b, t), IGNORE_INDEX, dtype=torch.long)
    segment_ids = torch.zeros((b, t), dtype=torch.long)
    position_ids = torch.zeros((b, t), dtype=torch.long)
    task_ids = torch.full((b, t), -1, dtype=torch.long)
    for i, row in enumerate(rows):
        start = 0
        for k, ex in enumerate(row, start=1):
            n = len(ex)
            input_ids[i, start : start + n] = torch.tensor(ex.input_ids)
            labels[i, start : start + n] = torch.tensor(ex.labels)
            segment_ids[i, start : start + n] = k
            position_ids[i, start : start + n] = torch.arange(n)
            task_ids[i, start : start + n] = ex.task
            start += n
    return {
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": (segment_ids > 0).long(),
        "segment_ids": segment_ids,
        "position_ids": position_ids,
        "task_ids": task_ids,
    }


class SFTCollator:
    """Pads a list of examples (one per row) on the right; see `collate_rows` for the returned tensors.

    Args:
        pad_id: the id written into padding positions (any id works: padding is masked and has label -100).
        pad_to_multiple_of: round the length up to a multiple of this (e.g. 8 for tensor cores).
    """

    def __init__(self, pad_id: int, pad_to_multiple_of: int = 1) -> None:
        self.pad_id = pad_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: Sequence[SFTExample]) -> dict[str, torch.Tensor]:
        return collate_rows([[e] for e in examples], self.pad_id, self.pad_to_multiple_of)


def pack_examples(examples: Sequence[SFTExample], max_length: int) -> list[list[SFTExample]]:
    """Greedily fill rows of at most `max_length` tokens with consecutive examples (next-fit, order kept)."""
    rows: list[list[SFTExample]] = []
    row: list[SFTExample] = []
    used = 0
    for ex in examples:
        if row and used + len(ex) > max_length:
            rows.append(row)
            row, used = [], 0
        row.append(ex)
        used += len(ex)
    if row:
        rows.append(row)
    return rows


def block_causal_mask(segment_ids: torch.Tensor) -> torch.Tensor:
    """Causal attention restricted to each packed example: (B, T) segment ids -> (B, 1, T, T) bool mask.

    Query i may attend to key j when `j <= i` and both belong to the same example (True = attend). A padding
    query (segment 0) attends only to itself, so no softmax row is empty.
    """
    t = segment_ids.shape[1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (B, T, T)
    causal = torch.ones(t, t, dtype=torch.bool, device=segment_ids.device).tril()  # (T, T)
    real = (segment_ids > 0)[:, :, None]  # (B, T, 1)
    eye = torch.eye(t, dtype=torch.bool, device=segment_ids.device)
    return ((same & causal & real) | eye)[:, None]  # (B, 1, T, T)


# ---------------------------------------------------------------------------------------------- mixing
class MixtureSampler:
    """Draws (task, example index) pairs: a task with probability weight / sum(weights), then the next example
    of that task in a per-task shuffled order (reshuffled after every pass over it).

    Args:
        sizes: number of examples of each task.
        weights: sampling weight of each task (>= 0, not all 0).
        seed: RNG seed.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], seed: int = 0) -> None:
        if len(sizes) != len(weights):
            raise ValueError(f"{len(sizes)} tasks but {len(weights)} weights")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"task weights must be >= 0 and not all 0, got {list(weights)}")
        if any(n <= 0 for n, w in zip(sizes, weights, strict=True) if w > 0):
            raise ValueError("a task with a positive weight has no examples")
        self.sizes = list(sizes)
        total = float(sum(weights))
        self.probs = [w / total for w in weights]
        self.rng = random.Random(seed)
        self._orders: list[list[int]] = [[] for _ in sizes]

    def next(self) -> tuple[int, int]:
        """The next (task, example index)."""
        task = self.rng.choices(range(len(self.sizes)), weights=self.probs)[0]
        if not self._orders[task]:
            order = list(range(self.sizes[task]))
            self.rng.shuffle(order)
            self._orders[task] = order
        return task, self._orders[task].pop()

    def state_dict(self) -> dict[str, Any]:
        """RNG state and what is left of each task's current pass (tensors/primitives: `weights_only`-safe)."""
        version, internal, gauss = self.rng.getstate()
        return {
            "sizes": list(self.sizes),
            "rng": [version, torch.tensor(internal, dtype=torch.long), gauss],
            "orders": [torch.tensor(o, dtype=torch.long) for o in self._orders],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state_dict` was taken.

        Raises:
            ValueError: the state belongs to data sets of other sizes.
        """
        if list(state["sizes"]) != self.sizes:
            raise ValueError(
                f"the saved data stream covers tasks of {list(state['sizes'])} examples, this data has {self.sizes}; "
                "resume with the same data"
            )
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(int(v) for v in internal.tolist()), gauss))
        self._orders = [o.tolist() for o in state["orders"]]


class SFTBatchStream:
    """Endless training batches from one or more tasks (mixed by weight), padded or packed.

    Data parallel (as `llmlab.data.loader.RandomWindowLoader`): every rank draws the rows of the same GLOBAL batch
    (`world_size * batch_size` rows, from identically seeded samplers) and keeps rows
    `[rank * batch_size, (rank + 1) * batch_size)`, so N ranks see exactly the rows one process with batch
    N * batch_size sees.

    Args:
        tasks: the examples of each task.
        weights: sampling weights of the tasks.
        batch_size: rows per batch (on this rank).
        max_length: longest row (packing fills rows up to it).
        pad_id: padding id.
        packing: put several examples into each row (block-diagonal attention, restarting positions).
        seed: RNG seed (the same on every rank).
        rank: this process's rank.
        world_size: number of data-parallel processes.
    """

    def __init__(
        self,
        tasks: Sequence[Sequence[SFTExample]],
        weights: Sequence[float],
        batch_size: int,
        max_length: int,
        pad_id: int,
        packing: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.tasks = tasks
        self.sampler = MixtureSampler([len(t) for t in tasks], weights, seed)
        self.batch_size, self.max_length, self.pad_id, self.packing = batch_size, max_length, pad_id, packing
        self.rank, self.world_size = rank, world_size
        self._pending: tuple[int, int] | None = None  # (task, index) of an example drawn for the next packed batch
        self.batches = 0  # global batches drawn so far

    def _draw(self) -> tuple[int, int]:
        if self._pending is not None:
            ref, self._pending = self._pending, None
            return ref
        return self.sampler.next()

    def _global_rows(self) -> list[list[SFTExample]]:
        """The `world_size * batch_size` rows of the next global batch (as (task, index) draws)."""
        n_rows = self.batch_size * self.world_size
        if not self.packing:
            return [[self.tasks[t][i]] for t, i in (self._draw() for _ in range(n_rows))]
        rows: list[list[SFTExample]] = [[]]
        used = 0
        while True:
            task, idx = self._draw()
            ex = self.tasks[task][idx]
            if rows[-1] and used + len(ex) > self.max_length:
                if len(rows) == n_rows:
                    self._pending = (task, idx)  # starts the next batch
                    break
                rows.append([])
                used = 0
            rows[-1].append(ex)
            used += len(ex)
        return rows

    def next_batch(self) -> dict[str, torch.Tensor]:
        """This rank's rows of the next global batch (see `collate_rows`)."""
        rows = self._global_rows()
        self.batches += 1
        b = self.batch_size
        return collate_rows(rows[self.rank * b : (self.rank + 1) * b], self.pad_id)

    def state_dict(self) -> dict[str, Any]:
        """The stream position (sampler RNG and orders, the pending packed example): `weights_only`-safe."""
        return {
            "sampler": self.sampler.state_dict(),
            "pending": list(self._pending) if self._pending is not None else None,
            "batches": self.batches,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where `state_dict` was taken (the same data, any rank)."""
        self.sampler.load_state_dict(state["sampler"])
        pending = state["pending"]
        self._pending = (int(pending[0]), int(pending[1])) if pending is not None else None
        self.batches = int(state["batches"])


def examples_fingerprint(tasks: Sequence[Sequence[SFTExample]]) -> str:
    """A SHA-256 of every example's tokens and labels, per task in order: tells whether training data changed."""
    h = hashlib.sha256()
    for examples in tasks:
        h.update(b"task")
        for ex in examples:
            h.update(array("q", ex.input_ids).tobytes())
            h.update(array("q", ex.labels).tobytes())
            h.update(len(ex).to_bytes(8, "little"))
    return h.hexdigest()


def eval_batches(examples: Sequence[SFTExample], batch_size: int, pad_id: int) -> Iterator[dict[str, torch.Tensor]]:
    """Padded batches over `examples` in order (one example per row), for held-out evaluation."""
    for i in range(0, len(examples), batch_size):
        yield collate_rows([[e] for e in examples[i : i + batch_size]], pad_id)


def split_examples(
    examples: Sequence[SFTExample], val_fraction: float, seed: int
) -> tuple[list[SFTExample], list[SFTExample]]:
    """A seeded random (train, val) split; val gets round(fraction * n) examples, at least 1 when fraction > 0."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"data.val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(val_fraction * len(examples))) if val_fraction > 0 else 0
    if n_val >= len(examples):
        raise ValueError(f"only {len(examples)} example(s): too few to hold out a validation split; add data")
    val = [examples[i] for i in sorted(order[:n_val])]
    train = [examples[i] for i in sorted(order[n_val:])]
    return train, val


def label_of(record: Mapping[str, Any]) -> str | None:
    """The response text of an Alpaca / prompt-completion record (used as the class label in classification)."""
    for key in ("output", "completion"):
        if isinstance(record.get(key), str):
            return record[key]
    return None
