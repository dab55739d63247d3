"""NSP and SOP pairs (hand-traced generator draws), segmenting and [CLS] A [SEP] B [SEP] packing."""

from __future__ import annotations

import pytest
import torch

from llmlab.data.sentence_tasks import SentencePair, group_segments, nsp_pairs, pack_pair, sop_pairs

DOCS = [[[1], [2], [3]], [[10], [11]], [[20]]]


def test_group_segments() -> None:
    assert group_segments([[1, 2], [3], [4, 5, 6], [], [7, 8, 9, 10, 11]], 4) == [[1, 2, 3], [4, 5, 6], [7, 8, 9, 10]]


def test_nsp_pairs_hand_traced() -> None:
    # seed 3 draws: pair (1,2): u=0.0043 < 0.5 -> d=0 (skip own doc 0 -> doc 1), s=1 -> [11];
    # pair (2,3): u=0.0270 -> d=0 -> doc 1, s=0 -> [10]; pair (10,11): u=0.772 -> the real next
    pairs = nsp_pairs(DOCS, torch.Generator().manual_seed(3))
    assert pairs == [SentencePair([1], [11], 1), SentencePair([2], [10], 1), SentencePair([10], [11], 0)]


def test_nsp_random_segment_never_from_own_document() -> None:
    for seed in range(20):
        for pair in nsp_pairs(DOCS, torch.Generator().manual_seed(seed), random_prob=1.0):
            own = next(d for d in DOCS if [pair.a] in [[s] for s in d])
            assert pair.label == 1 and pair.b not in own


def test_nsp_needs_two_documents() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        nsp_pairs([[[1], [2]]], torch.Generator())


def test_sop_pairs_hand_traced() -> None:
    # seed 3 uniforms: 0.0043 (< 0.05: swap), 0.1056, 0.2858 (in order)
    pairs = sop_pairs(DOCS, torch.Generator().manual_seed(3), swap_prob=0.05)
    assert pairs == [SentencePair([2], [1], 1), SentencePair([2], [3], 0), SentencePair([10], [11], 0)]


def test_pack_pair_truncates_longest_first() -> None:
    ids, types, special = pack_pair([1, 2, 3, 4], [5, 6], cls_id=101, sep_id=102, max_length=8)
    assert ids == [101, 1, 2, 3, 102, 5, 6, 102]
    assert types == [0, 0, 0, 0, 0, 1, 1, 1]
    assert special == [True, False, False, False, True, False, False, True]
