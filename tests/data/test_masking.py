"""MLM masking (80/10/10, whole-word, Chinese words from jieba, static vs dynamic) and ELECTRA replacements:
hand-chosen random draws -> exact masked inputs and labels; the sampling itself checked by its rates."""

from __future__ import annotations

import pytest
import torch

from llmlab.data.masking import (
    IGNORE_INDEX,
    MaskingDraws,
    apply_masking,
    chinese_word_ids,
    draw_masking,
    mask_tokens,
    masking_seed,
)

CLS, SEP, MASK = 101, 102, 103
X = IGNORE_INDEX


def _draws(select: list[float], action: list[float], random_ids: list[int]) -> MaskingDraws:
    return MaskingDraws(torch.tensor(select), torch.tensor(action), torch.tensor(random_ids))


def test_80_10_10_on_hand_chosen_draws() -> None:
    ids = [CLS, 7, 8, 9, 10, SEP]
    special = [True, False, False, False, False, True]
    # chosen: positions 1 (0.10), 3 (0.05), 4 (0.14) < 0.15; 2 (0.50) not; 0 and 5 special despite select 0.0
    # actions: 1 -> 0.50 < 0.8 [MASK]; 3 -> 0.85 in [0.8, 0.9) random (42); 4 -> 0.95 kept
    draws = _draws([0.0, 0.10, 0.50, 0.05, 0.14, 0.0], [0.0, 0.5, 0.0, 0.85, 0.95, 0.0], [1, 2, 3, 42, 5, 6])
    inputs, labels = apply_masking(ids, special, MASK, draws, prob=0.15)
    assert inputs.tolist() == [CLS, MASK, 8, 42, 10, SEP]
    assert labels.tolist() == [X, 7, X, 9, 10, X]


def test_whole_word_masking_masks_every_token_of_a_chosen_word() -> None:
    ids = [CLS, 20, 21, 22, 23, 24, SEP]
    word_ids = [None, 0, 0, 1, 2, 2, None]
    # select is indexed by word id: word 0 -> 0.9 (no), word 1 -> 0.1 (yes), word 2 -> 0.05 (yes)
    draws = _draws([0.9, 0.1, 0.05, 0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.5, 0.85, 0.99, 0.0], [0, 0, 0, 0, 33, 0, 0])
    special = [True, False, False, False, False, False, True]
    inputs, labels = apply_masking(ids, special, MASK, draws, prob=0.15, word_ids=word_ids)
    assert inputs.tolist() == [CLS, 20, 21, MASK, 33, 24, SEP]
    assert labels.tolist() == [X, X, X, 22, 23, 24, X]


def test_chinese_word_ids_follow_jieba() -> None:
    text = "我爱北京天安门"
    offsets = [(0, 0)] + [(i, i + 1) for i in range(len(text))] + [(0, 0)]  # [CLS] one token per char [SEP]
    assert chinese_word_ids(text, offsets) == [None, 0, 1, 2, 2, 3, 3, 3, None]  # 我 / 爱 / 北京 / 天安门


def test_mask_tokens_rates_and_specials() -> None:
    n = 40_000
    ids = torch.randint(1000, 2000, (n,), generator=torch.Generator().manual_seed(1))
    special = torch.zeros(n, dtype=torch.bool)
    special[::10] = True
    inputs, labels = mask_tokens(ids, special, MASK, 5000, prob=0.15, generator=torch.Generator().manual_seed(2))
    chosen = labels != X
    assert not bool(chosen[special].any()) and torch.equal(inputs[special], ids[special])
    assert torch.equal(labels[chosen], ids[chosen])
    assert abs(chosen.float().mean().item() - 0.15 * 0.9) < 0.01
    n_chosen = int(chosen.sum())
    as_mask = int((inputs[chosen] == MASK).sum())
    changed = int(((inputs[chosen] != MASK) & (inputs[chosen] != ids[chosen])).sum())
    assert abs(as_mask / n_chosen - 0.8) < 0.02
    assert abs(changed / n_chosen - 0.1) < 0.015  # random tokens (rarely equal to the original)
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_mask_tokens_is_a_function_of_the_generator() -> None:
    ids, special = list(range(200, 260)), [False] * 60
    a = mask_tokens(ids, special, MASK, 300, generator=torch.Generator().manual_seed(5))
    b = mask_tokens(ids, special, MASK, 300, generator=torch.Generator().manual_seed(5))
    c = mask_tokens(ids, special, MASK, 300, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    draws = draw_masking(60, 300, torch.Generator().manual_seed(5))  # the documented draw order
    assert torch.equal(apply_masking(ids, special, MASK, draws)[1], a[1])


def test_static_masking_repeats_dynamic_masking_changes() -> None:
    ids, special = list(range(200, 300)), [False] * 100

    def masked_positions(draw: int, dynamic: bool) -> list[int]:
        g = torch.Generator().manual_seed(masking_seed(7, 3, draw, dynamic=dynamic))
        return (mask_tokens(ids, special, MASK, 400, generator=g)[1] != X).nonzero().flatten().tolist()

    assert masked_positions(0, False) == masked_positions(1, False) == masked_positions(5, False)
    assert masked_positions(0, True) != masked_positions(1, True)
    assert masked_positions(0, True) == masked_positions(0, True)


def test_bad_probability_is_one_line_error() -> None:
    with pytest.raises(ValueError, match="masking probability"):
        mask_tokens([1, 2], [False, False], MASK, 10, prob=1.5)
