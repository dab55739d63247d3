"""Sentence-pair pretraining tasks: next-sentence prediction (NSP) and sentence-order prediction (SOP).

- NSP (BERT, Devlin et al. 2019, https://arxiv.org/abs/1810.04805): segment B is the segment that follows A
  in its document (label 0, "IsNext") or, with probability 0.5, a random segment of *another* document
  (label 1, "NotNext"; HF's ``next_sentence_label`` convention).
- SOP (ALBERT, Lan et al. 2020, https://arxiv.org/abs/1909.11942): both segments are consecutive segments of one
  document, in order (label 0) or, with probability 0.5, swapped (label 1). Topic cues cannot solve it.

A *document* is a list of segments (token-id lists, in order); `group_segments` makes segments from lines.
Pairs are packed as ``[CLS] A [SEP] B [SEP]`` with token types 0/1 (`pack_pair`). Pure functions with an
explicit `torch.Generator` whose draws are documented, so tests pin the exact pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

NEXT, NOT_NEXT = 0, 1  # NSP labels (HF BertForPreTraining: 0 = B continues A)
IN_ORDER, SWAPPED = 0, 1  # SOP labels (HF AlbertForPreTraining: 0 = original order)


@dataclass(frozen=True)
class SentencePair:
    """Two segments and the sentence-task label (NSP: 0 next / 1 random; SOP: 0 in order / 1 swapped)."""

    a: list[int]
    b: list[int]
    label: int


def group_segments(lines: Sequence[Sequence[int]], max_tokens: int) -> list[list[int]]:
    """Greedily join consecutive token lines into segments of at most `max_tokens` tokens (a longer line is cut
    to `max_tokens`); empty lines are skipped."""
    if max_tokens < 1:
        raise ValueError(f"segment length must be at least 1 token, got {max_tokens}")
    segments: list[list[int]] = []
    current: list[int] = []
    for line in lines:
        if not line:
            continue
        if current and len(current) + len(line) > max_tokens:
            segments.append(current)
            current = []
        current += list(line)[: max_tokens - len(current)]
    if current:
        segments.append(current)
    return segments


def nsp_pairs(
    documents: Sequence[Sequence[Sequence[int]]], generator: torch.Generator, random_prob: float = 0.5
) -> list[SentencePair]:
    """One NSP pair per consecutive segment pair (A = segment i, B = segment i+1) of every document.

    Draws per pair, in document/segment order: one uniform ``u``; when ``u < random_prob`` also
    ``d = randint(n_docs - 1)`` (the other document: index ``d`` counted with A's document skipped) and
    ``s = randint(len(that document))`` (its segment), and B is replaced by that segment (label 1).

    Raises:
        ValueError: fewer than two documents (a random B must come from another document).
    """
    usable = [d for d in documents if len(d) > 0]
    if len(usable) < 2:
        raise ValueError(f"next-sentence prediction needs at least 2 non-empty documents, got {len(usable)}")
    pairs: list[SentencePair] = []
    for doc_index, doc in enumerate(usable):
        for i in range(len(doc) - 1):
            a, b, label = list(doc[i]), list(doc[i + 1]), NEXT
            if float(torch.rand((), generator=generator)) < random_prob:
                other = int(torch.randint(len(usable) - 1, (), generator=generator))
                other += other >= doc_index  # skip A's own document
                segment = int(torch.randint(len(usable[other]), (), generator=generator))
                b, label = list(usable[other][segment]), NOT_NEXT
            pairs.append(SentencePair(a, b, label))
    return pairs


def sop_pairs(
    documents: Sequence[Sequence[Sequence[int]]], generator: torch.Generator, swap_prob: float = 0.5
) -> list[SentencePair]:
    """One SOP pair per consecutive segment pair of every document: one uniform ``u`` per pair; ``u < swap_prob``
    swaps the two segments (label 1)."""
    pairs: list[SentencePair] = []
    for doc in documents:
        for i in range(len(doc) - 1):
            a, b = list(doc[i]), list(doc[i + 1])
            if float(torch.rand((), generator=generator)) < swap_prob:
                pairs.append(SentencePair(b, a, SWAPPED))
            else:
                pairs.append(SentencePair(a, b, IN_ORDER))
    return pairs


def next_pairs(documents: Sequence[Sequence[Sequence[int]]]) -> list[SentencePair]:
    """Every consecutive segment pair in order (label 0): the pairs of a run without a sentence task."""
    return [SentencePair(list(doc[i]), list(doc[i + 1]), NEXT) for doc in documents for i in range(len(doc) - 1)]


def pack_pair(
    a: Sequence[int], b: Sequence[int], cls_id: int, sep_id: int, max_length: int
) -> tuple[list[int], list[int], list[bool]]:
    """``[CLS] A [SEP] B [SEP]`` cut to `max_length` (longest segment first, from its end, like HF's
    ``longest_first``).

    Returns:
        (ids, token_type_ids, special_mask): token types 0 for [CLS] A [SEP], 1 for B [SEP].
    """
    if max_length < 5:
        raise ValueError(f"max_length must leave room for [CLS] A [SEP] B [SEP] (>= 5), got {max_length}")
    a, b = list(a), list(b)
    while len(a) + len(b) > max_length - 3:
        if len(a) >= len(b):
            a.pop()
        else:
            b.pop()
    ids = [cls_id, *a, sep_id, *b, sep_id]
    types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
    special = [True] + [False] * len(a) + [True] + [False] * len(b) + [True]
    return ids, types, special
