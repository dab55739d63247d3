"""Labelled task data for encoder heads (`llmlab finetune task=...`): JSONL records -> token ids + labels.

Record formats (one JSON object per line):

    sequence_classification  {"text": ..., "text_pair"?: ..., "label": "positive" | 1}
    regression               {"text": ..., "text_pair"?: ..., "label": 3.5}
    token_classification     {"tokens": ["Ada", "lives", "in", "Paris"], "tags": ["B-PER", "O", "O", "B-LOC"]}
    question_answering       {"id", "context", "question", "answers": {"text": [...], "answer_start": [...]}}
                             (SQuAD; windows and answer positions: `llmlab.data.qa_features`)
    multiple_choice          {"context"?: ..., "question": ..., "choices": [...], "label": 0}
    relation_classification  {"text": ..., "head": [start, end], "tail": [start, end], "label": ...}
                             (character offsets, end exclusive)

Tokenisation uses the tokenizer's own post-processor ([CLS] a [SEP] b [SEP] for BERT, <s> a </s></s> b </s>
for RoBERTa) on a private copy of its `tokenizers` backend, so truncation settings never leak into the caller's
tokenizer. Token classification aligns word labels to sub-tokens as BERT did for CoNLL NER (Devlin et al.
2019, https://arxiv.org/abs/1810.04805, sec. 5.3): the first sub-token of a word carries the word's tag, the
other sub-tokens and the special tokens carry -100 (no loss, not scored); `align_labels` is that rule.
Relation classification wraps the two entities in marker tokens ``[E1] head [/E1]``, ``[E2] tail [/E2]``
(Baldini Soares et al. 2019, https://arxiv.org/abs/1906.03158, "entity markers"), added to the tokenizer as
special tokens; the head reads the states at the two start markers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.io import read_jsonl_records
from llmlab.models.task_heads import IGNORE_INDEX, TASK_HEADS

TASKS = TASK_HEADS  # the tasks with a head (llmlab.models.task_heads); seq2seq has its own runner
ENTITY_MARKERS = ("[E1]", "[/E1]", "[E2]", "[/E2]")
_REQUIRED = {
    "sequence_classification": ("text", "label"),
    "regression": ("text", "label"),
    "token_classification": ("tokens", "tags"),
    "question_answering": ("context", "question", "answers"),
    "multiple_choice": ("question", "choices", "label"),
    "relation_classification": ("text", "head", "tail", "label"),
}


def check_task(task: str) -> str:
    """`task` if it is one of `TASKS`, else a one-line ValueError listing them."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    return task


# ---------------------------------------------------------------------------------------------- records
def _check_record(rec: Any, task: str, where: str) -> None:
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    missing = [k for k in _REQUIRED[task] if k not in rec]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing} for task {task} (needs {list(_REQUIRED[task])})")
    if task == "token_classification" and len(rec["tokens"]) != len(rec["tags"]):
        raise ValueError(f"{where}: {len(rec['tokens'])} tokens but {len(rec['tags'])} tags; give one tag per token")
    if task == "regression" and not isinstance(rec["label"], (int, float)):
        raise ValueError(f"{where}: regression labels are numbers, got {rec['label']!r}")
    if task == "multiple_choice" and not (isinstance(rec["label"], int) and 0 <= rec["label"] < len(rec["choices"])):
        raise ValueError(f"{where}: label must be the index of the right choice (0..{len(rec['choices']) - 1})")
    if task == "relation_classification":
        for key in ("head", "tail"):
            span = rec[key]
            if not (isinstance(span, list) and len(span) == 2 and 0 <= span[0] < span[1] <= len(rec["text"])):
                raise ValueError(f"{where}: {key} must be [start, end] character offsets inside the text, got {span}")
    if task == "question_answering":
        answers = rec["answers"]
        if not isinstance(answers, dict) or len(answers.get("text", [])) != len(answers.get("answer_start", [])):
            raise ValueError(f"{where}: answers must be {{'text': [...], 'answer_start': [...]}} of equal lengths")


def read_task_records(path: str | Path, task: str) -> list[dict[str, Any]]:
    """The records of a task's JSONL file, each checked for the keys its task needs.

    Raises:
        FileNotFoundError: no such file.
        ValueError: `<path> line N: ...` naming the bad record and what it lacks.
    """
    check_task(task)
    if not Path(path).is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    records = []
    for lineno, rec in read_jsonl_records(path):
        _check_record(rec, task, f"{path} line {lineno}")
        records.append(rec)
    if not records:
        raise ValueError(f"{path} has no records; give a JSONL file with one {task} example per line")
    return records


def label_names(task: str, records: Sequence[dict[str, Any]]) -> list[str]:
    """The label vocabulary found in `records`: sorted names (token tags: "O" first, then B-/I- by type);
    [] for the tasks without classes (regression, QA, multiple choice)."""
    if task in ("regression", "question_answering", "multiple_choice"):
        return []
    if task == "token_classification":
        tags = {t for r in records for t in r["tags"]}
        return sorted(tags, key=lambda t: (t != "O", t[2:], t[:2]))
    return sorted({str(r["label"]) for r in records}, key=lambda s: (len(s), s) if s.isdigit() else (math.inf, s))


# ---------------------------------------------------------------------------------------------- tokenisation
class TextEncoder:
    """Encodes texts/pairs/word lists with the tokenizer's special tokens, truncated to `max_length`.

    Args:
        tokenizer: an llmlab tokenizer (its `.backend` `tokenizers.Tokenizer` is copied, never changed).
        max_length: longest encoding in tokens, special tokens included.
        stride: tokens shared by consecutive windows of an overflowing second text (QA doc stride).
        strategy: `longest_first` | `only_first` | `only_second` (which text gets truncated).
    """

    def __init__(self, tokenizer: Any, max_length: int, stride: int = 0, strategy: str = "longest_first") -> None:
        from tokenizers import Tokenizer as HFTokenizer

        self.backend = HFTokenizer.from_str(tokenizer.backend.to_str())
        self.backend.no_padding()
        self.backend.enable_truncation(max_length, stride=stride, strategy=strategy)
        self.max_length = max_length

    def encode(self, text: str, pair: str | None = None) -> Any:
        """The `tokenizers.Encoding` of `text` (and `pair`); overflowing windows are in `.overflowing`."""
        return self.backend.encode(text, pair, add_special_tokens=True)

    def encode_words(self, words: Sequence[str]) -> Any:
        """The encoding of pre-split words (`.word_ids` maps each token to its word)."""
        return self.backend.encode(list(words), is_pretokenized=True, add_special_tokens=True)


def align_labels(word_ids: Sequence[int | None], word_labels: Sequence[int]) -> list[int]:
    """Token labels from word labels: the first sub-token of each word gets its word's label, every other
    sub-token and each special token (word id None) gets -100.

    >>> align_labels([None, 0, 0, 1, None], [3, 5])
    [-100, 3, -100, 5, -100]
    """
    labels, previous = [], None
    for w in word_ids:
        labels.append(IGNORE_INDEX if w is None or w == previous else word_labels[w])
        previous = w
    return labels


def first_subtoken_positions(word_ids: Sequence[int | None]) -> dict[int, int]:
    """word index -> position of its first sub-token (words cut off by truncation are absent)."""
    first: dict[int, int] = {}
    for pos, w in enumerate(word_ids):
        if w is not None and w not in first:
            first[w] = pos
    return first


def insert_entity_markers(text: str, head: Sequence[int], tail: Sequence[int]) -> str:
    """`text` with ``[E1] ... [/E1]`` around the head span and ``[E2] ... [/E2]`` around the tail span
    (character offsets, end exclusive; the spans must not overlap).

    >>> insert_entity_markers("Ada met Bob", [0, 3], [8, 11])
    '[E1] Ada [/E1] met [E2] Bob [/E2]'
    """
    (hs, he), (ts, te) = head, tail
    if hs < te and ts < he:
        raise ValueError(f"head {list(head)} and tail {list(tail)} overlap; relation entities must be disjoint")
    inserts = [(hs, "[E1] "), (he, " [/E1]"), (ts, "[E2] "), (te, " [/E2]")]
    out, at = [], 0
    for pos, marker in sorted(inserts, key=lambda x: (x[0], x[1].startswith("["))):
        out += [text[at:pos], marker]
        at = pos
    return "".join([*out, text[at:]])


def add_entity_markers(tokenizer: Any) -> list[int]:
    """Add `ENTITY_MARKERS` to the tokenizer as special tokens (idempotent); returns their ids."""
    from tokenizers import AddedToken

    new = [m for m in ENTITY_MARKERS if tokenizer.backend.token_to_id(m) is None]
    if new:
        tokenizer.backend.add_special_tokens([AddedToken(m, single_word=False, normalized=False) for m in new])
    return [tokenizer.backend.token_to_id(m) for m in ENTITY_MARKERS]


@dataclass
class TaskExample:
    """One tokenized example (or, for multiple choice, one row per choice).

    Attributes:
        input_ids / token_type_ids: (T,) ids, or (K, T_k) for multiple choice.
        label: class id (int), score (float), per-token label ids (list, -100 where ignored), QA
            (start, end) token positions, or None (prediction only).
        marker_positions: relation classification: positions of [E1] and [E2].
        record: index of the source record (QA: several windows share it).
        offsets: QA: each token's (start, end) characters in the context, None outside it.
        word_ids: token classification: each token's word index (None for special tokens).
    """

    input_ids: list[Any]
    token_type_ids: list[Any]
    label: Any = None
    marker_positions: tuple[int, int] | None = None
    record: int = 0
    offsets: list[tuple[int, int] | None] | None = field(default=None, repr=False)
    word_ids: list[int | None] | None = field(default=None, repr=False)


def encode_records(
    task: str,
    records: Sequence[dict[str, Any]],
    tokenizer: Any,
    labels: Sequence[str],
    max_length: int,
    *,
    with_labels: bool = True,
) -> tuple[list[TaskExample], int]:
    """Tokenize the records of every task except QA (`llmlab.data.qa_features.prepare_features` does QA).

    Relation classification adds the entity markers to `tokenizer` (`add_entity_markers`); the model's
    embeddings must then cover them (`llmlab.models.task_heads.resize_token_embeddings`).

    Returns:
        (examples, dropped): relation records whose markers were cut off by `max_length` are dropped.

    Raises:
        ValueError: a label outside `labels` (naming the record and the known labels).
    """
    check_task(task)
    index = {name: i for i, name in enumerate(labels)}
    encoder = TextEncoder(tokenizer, max_length)
    marker_ids = add_entity_markers(tokenizer) if task == "relation_classification" else []
    if marker_ids:
        encoder = TextEncoder(tokenizer, max_length)  # the copy must know the markers

    def class_id(value: Any, i: int) -> int:
        if str(value) not in index:
            raise ValueError(f"record {i}: label {value!r} is not one of the labels {list(labels)}; add it to labels")
        return index[str(value)]

    if task == "multiple_choice" and len({len(r["choices"]) for r in records}) > 1:
        raise ValueError("multiple-choice records must all have the same number of choices")
    examples, dropped = [], 0
    for i, rec in enumerate(records):
        label: Any = None
        if task == "token_classification":
            enc = encoder.encode_words(rec["tokens"])
            if with_labels:
                label = align_labels(enc.word_ids, [class_id(t, i) for t in rec["tags"]])
            examples.append(TaskExample(enc.ids, enc.type_ids, label, record=i, word_ids=list(enc.word_ids)))
        elif task == "multiple_choice":
            first = rec.get("context") or rec["question"]
            encs = [
                encoder.encode(first, f"{rec['question']} {c}" if rec.get("context") else str(c))
                for c in rec["choices"]
            ]
            label = int(rec["label"]) if with_labels else None
            examples.append(TaskExample([e.ids for e in encs], [e.type_ids for e in encs], label, record=i))
        elif task == "relation_classification":
            enc = encoder.encode(insert_entity_markers(rec["text"], rec["head"], rec["tail"]))
            if marker_ids[0] not in enc.ids or marker_ids[2] not in enc.ids:
                dropped += 1
                continue
            markers = (enc.ids.index(marker_ids[0]), enc.ids.index(marker_ids[2]))
            label = class_id(rec["label"], i) if with_labels else None
            examples.append(TaskExample(enc.ids, enc.type_ids, label, markers, record=i))
        else:  # sequence classification / regression
            enc = encoder.encode(rec["text"], rec.get("text_pair"))
            if with_labels:
                label = float(rec["label"]) if task == "regression" else class_id(rec["label"], i)
            examples.append(TaskExample(enc.ids, enc.type_ids, label, record=i))
    return examples, dropped


def collate_examples(task: str, examples: Sequence[TaskExample], pad_id: int) -> dict[str, Any]:
    """Right-padded tensors of a batch: input_ids, attention_mask, token_type_ids (B, T) — (B, K, T) for
    multiple choice — and, when every example has one, labels ((B,) / (B, T) with -100 padding / (B, 2) QA
    positions) and marker_positions (B, 2)."""
    import torch

    def rows(ex: TaskExample) -> list[list[int]]:
        return ex.input_ids if task == "multiple_choice" else [ex.input_ids]

    k = max(len(rows(ex)) for ex in examples)
    t = max(len(r) for ex in examples for r in rows(ex))
    ids = torch.full((len(examples), k, t), pad_id, dtype=torch.long)
    types = torch.zeros((len(examples), k, t), dtype=torch.long)
    mask = torch.zeros((len(examples), k, t), dtype=torch.long)
    for b, ex in enumerate(examples):
        type_rows = ex.token_type_ids if task == "multiple_choice" else [ex.token_type_ids]
        for j, (r, tt) in enumerate(zip(rows(ex), type_rows, strict=True)):
            ids[b, j, : len(r)] = torch.tensor(r)
            types[b, j, : len(r)] = torch.tensor(tt)
            mask[b, j, : len(r)] = 1
    squeeze = (lambda x: x) if task == "multiple_choice" else (lambda x: x[:, 0])
    batch: dict[str, Any] = {
        "input_ids": squeeze(ids),
        "attention_mask": squeeze(mask),
        "token_type_ids": squeeze(types),
    }
    if all(ex.label is not None for ex in examples):
        if task == "token_classification":
            labels = torch.full((len(examples), t), IGNORE_INDEX, dtype=torch.long)
            for b, ex in enumerate(examples):
                labels[b, : len(ex.label)] = torch.tensor(ex.label)
        elif task == "regression":
            labels = torch.tensor([float(ex.label) for ex in examples])
        else:
            labels = torch.tensor([ex.label for ex in examples], dtype=torch.long)  # (B,) or (B, 2)
        batch["labels"] = labels
    if task == "relation_classification":
        batch["marker_positions"] = torch.tensor([ex.marker_positions for ex in examples], dtype=torch.long)
    return batch
