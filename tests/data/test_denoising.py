"""T5 span corruption and BART text infilling / sentence permutation on hand-computed cases."""

from __future__ import annotations

import pytest
import torch

from llmlab.data.denoising import (
    _poisson_span_lengths,
    infill_spans,
    permute_sentences,
    random_segmentation,
    random_spans_noise_mask,
    reorder_sentences,
    span_corrupt_with_mask,
    span_corruption,
    t5_sentinel_ids,
    text_infilling,
)

M = 99


def test_sentinels_count_down_from_the_end_of_the_vocabulary() -> None:
    assert t5_sentinel_ids(32100, 3) == [32099, 32098, 32097]  # HF: <extra_id_0> = 32099


def test_span_corruption_inputs_and_targets_for_a_given_mask() -> None:
    ids = list(range(1, 11))
    mask = [False, False, True, True, False, False, False, True, False, False]
    s0, s1 = 32099, 32098
    inputs, targets = span_corrupt_with_mask(ids, mask, [s0, s1], eos_id=1)
    assert inputs == [1, 2, s0, 5, 6, 7, s1, 9, 10, 1]
    assert targets == [s0, 3, 4, s1, 8, 1]


def test_ten_tokens_at_15_percent_is_one_final_span_of_two() -> None:
    # round(10 * 0.15) = 2 noise tokens, round(min(2, 8) / 3) = 1 span: non-noise 8 then noise 2, for any seed
    for seed in range(5):
        assert random_spans_noise_mask(10, 0.15, 3.0, torch.Generator().manual_seed(seed)) == [False] * 8 + [True] * 2
    inputs, targets = span_corruption(list(range(1, 11)), [500, 499], generator=torch.Generator().manual_seed(0))
    assert inputs == [1, 2, 3, 4, 5, 6, 7, 8, 500] and targets == [500, 9, 10]


@pytest.mark.parametrize("length", [20, 37, 100, 512])
def test_noise_mask_counts_follow_t5(length: int) -> None:
    mask = random_spans_noise_mask(length, 0.15, 3.0, torch.Generator().manual_seed(length))
    noise = min(max(round(length * 0.15), 1), length - 1)
    spans = max(round(min(noise, length - round(length * 0.15)) / 3.0), 1)
    starts = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
    assert len(mask) == length and sum(mask) == noise and starts == spans
    assert mask[0] is False and mask[-1] is True  # starts with kept text, ends with a noise span


def test_random_segmentation_is_a_composition() -> None:
    lengths = random_segmentation(77, 26, torch.Generator().manual_seed(0))
    assert len(lengths) == 26 and sum(lengths) == 77 and min(lengths) >= 1


def test_infill_spans_one_mask_per_span_and_inserts() -> None:
    ids = [1, 2, 3, 4, 5]
    assert infill_spans(ids, [(1, 2), (4, 0)], M) == [1, M, 4, M, 5]  # span of 2 -> one mask; 0-length inserts
    assert infill_spans(ids, [(1, 2), (2, 2)], M) == [1, M, 5]  # overlapping spans merge
    assert infill_spans(ids, [(0, 1), (1, 1)], M) == [M, 3, 4, 5]  # touching spans merge
    assert infill_spans(ids, [(5, 0)], M) == [1, 2, 3, 4, 5, M]  # insert at the end


def test_poisson_budget_is_exact() -> None:
    for seed in range(10):
        lengths = _poisson_span_lengths(30, 3.0, torch.Generator().manual_seed(seed))
        assert sum(lengths) == 30 and min(lengths) >= 0


def test_text_infilling_keeps_ends_and_masks_about_the_ratio() -> None:
    ids = [0] + list(range(10, 110)) + [2]
    out = text_infilling(ids, M, 0.3, 3.0, torch.Generator().manual_seed(4), keep_first=1, keep_last=1)
    assert out[0] == 0 and out[-1] == 2 and M in out
    kept = [t for t in out if t != M]
    assert kept == [t for t in ids if t in set(kept)]  # the unmasked tokens, in order
    assert 100 - 30 <= len(kept) - 2 < 100  # at most ceil(0.3 * 100) tokens removed (spans may overlap)
    assert out == text_infilling(ids, M, 0.3, 3.0, torch.Generator().manual_seed(4), keep_first=1, keep_last=1)


def test_sentence_permutation() -> None:
    dot = 4
    assert reorder_sentences([[1, 2, dot], [3, dot], [5]], [2, 0, 1]) == [5, 1, 2, dot, 3, dot]
    ids = [1, 2, dot, 3, dot, 5, 6, dot, 7]  # sentences [1 2 .] [3 .] [5 6 .] [7] (a trailing partial one)
    order = torch.randperm(4, generator=torch.Generator().manual_seed(1)).tolist()
    out = permute_sentences(ids, [dot], torch.Generator().manual_seed(1))
    assert out == reorder_sentences([[1, 2, dot], [3, dot], [5, 6, dot], [7]], order)
    assert order != [0, 1, 2, 3] and sorted(out) == sorted(ids)
