"""Extractive QA features: SQuAD records -> overlapping windows ("features") with answer token positions and
character offsets, as Hugging Face's `run_qa.py` prepares them (BERT's SQuAD recipe, Devlin et al. 2019,
https://arxiv.org/abs/1810.04805, sec. 4.2).

Each record is encoded as ``[CLS] question [SEP] context [SEP]`` with only the context truncated; a context
longer than `max_length` allows is cut into several windows that share `doc_stride` tokens with the previous
one (the tokenizer's truncation with stride, exactly HF's `return_overflowing_tokens=True, stride=doc_stride`).
Training labels: the first answer's first and last tokens when the answer lies wholly inside the window's
context, else the [CLS] position (0) for both ("no answer in this window"). For evaluation every window keeps
its offsets (None outside the context) so `llmlab.eval.metrics.qa.search_answer` can map the best span back to
the context's characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llmlab.data.tasks import TaskExample, TextEncoder


def answer_token_span(
    offsets: Sequence[tuple[int, int]], sequence_ids: Sequence[int | None], start_char: int, end_char: int
) -> tuple[int, int] | None:
    """Token positions (first, last) of the characters [start_char, end_char) inside the context part
    (sequence id 1) of one window, or None when the answer is not wholly inside that window."""
    context = [i for i, s in enumerate(sequence_ids) if s == 1]
    if not context or offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return None
    first = next(i for i in context if offsets[i][1] > start_char)
    last = next(i for i in reversed(context) if offsets[i][0] < end_char)
    return first, last


def prepare_features(
    records: Sequence[dict[str, Any]], tokenizer: Any, max_length: int = 384, doc_stride: int = 128
) -> list[TaskExample]:
    """The windows of every record (`TaskExample.record` is the record's index; `offsets` map context tokens
    to characters, None elsewhere; `label` is (start, end) token positions, (0, 0) when the window misses the
    answer or the record has none).

    Raises:
        ValueError: `doc_stride` too large for `max_length`, or a question too long to leave room for context.
    """
    if not 0 <= doc_stride < max_length // 2:
        raise ValueError(f"doc_stride must be in [0, max_length / 2) = [0, {max_length // 2}), got {doc_stride}")
    encoder = TextEncoder(tokenizer, max_length, stride=doc_stride, strategy="only_second")
    features: list[TaskExample] = []
    for i, rec in enumerate(records):
        if not (isinstance(rec["question"], str) and isinstance(rec["context"], str)):
            raise ValueError(f"record {i}: 'question' and 'context' must be strings; fix the record")
        question = rec["question"].lstrip()  # HF strips leading spaces: they waste window room
        try:
            first = encoder.encode(question, rec["context"])
        except Exception as e:  # tokenizers raises a plain Exception when the question alone leaves no room
            raise ValueError(f"record {i}: question too long for max_length={max_length} ({e}); shorten it") from None
        answers = rec.get("answers") or {"text": [], "answer_start": []}
        span = None
        if answers["text"]:
            start_char = int(answers["answer_start"][0])
            span = (start_char, start_char + len(answers["text"][0]))
        for enc in [first, *first.overflowing]:
            seq = enc.sequence_ids
            found = answer_token_span(enc.offsets, seq, *span) if span else None
            offsets = [tuple(o) if s == 1 else None for o, s in zip(enc.offsets, seq, strict=True)]
            features.append(TaskExample(enc.ids, enc.type_ids, found or (0, 0), record=i, offsets=offsets))
    return features
