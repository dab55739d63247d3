"""`llmlab.align.packing`: pairs packed as ``prompt | chosen | rejected`` (the prompt once, no padding) score every
response exactly as the padded chosen-first rows do, with the same gradient; models that cannot be packed are
recognised."""

from __future__ import annotations

import pytest
import tiny_models
import torch
from align_helpers import tiny_gpt, tiny_llama

from llmlab.align.logprobs import token_logprobs
from llmlab.align.packing import (
    CHOSEN,
    PROMPT,
    REJECTED,
    can_pack,
    pack_pairs,
    pair_attention_mask,
    pair_rows,
    response_logprob_sums,
)
from llmlab.data.preference import PreferencePair, collate_pairs
from llmlab.peft import LoraConfig, PromptConfig, get_peft_model


def _pairs(seed: int = 0) -> list[PreferencePair]:
    g = torch.Generator().manual_seed(seed)
    ids = lambda n: torch.randint(3, 90, (n,), generator=g).tolist()  # noqa: E731
    shapes = [(3, 9, 2), (7, 2, 5), (2, 4, 4), (5, 1, 12), (4, 11, 1), (6, 3, 3), (9, 20, 14)]
    return [PreferencePair(ids(a), ids(b), ids(c), 0.0, i + 1) for i, (a, b, c) in enumerate(shapes)]


def test_pack_pairs_layout() -> None:
    pairs = _pairs()
    packed = pack_pairs(pairs)
    width = max(len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    assert packed["input_ids"].shape[1] == width and packed["input_ids"].shape[0] < len(pairs)
    assert int(packed["attention_mask"].sum()) == sum(
        len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs
    )  # each prompt once, no padding inside
    flat_ids = packed["input_ids"].flatten()
    b = len(pairs)
    for i, p in enumerate(pairs):
        assert packed["target"][packed["sequence"] == i].tolist() == p.chosen_ids
        assert packed["target"][packed["sequence"] == b + i].tolist() == p.rejected_ids
        # the first chosen and the first rejected token are both predicted from the prompt's last token
        first_c = packed["predictor"][packed["sequence"] == i][0]
        first_r = packed["predictor"][packed["sequence"] == b + i][0]
        assert first_c == first_r and int(flat_ids[first_c]) == p.prompt_ids[-1]
    mask = pair_attention_mask(packed["segment_ids"], packed["branch"])[:, 0]
    br = packed["branch"]
    chosen_q, rejected_k = br[:, :, None] == CHOSEN, br[:, None, :] == REJECTED
    assert not (mask & (br[:, :, None] == REJECTED) & (br[:, None, :] == CHOSEN)).any()  # branches never meet
    assert not (
        mask & (br[:, :, None] == PROMPT) & ~(br[:, None, :] == PROMPT) & ~torch.eye(mask.shape[-1]).bool()
    ).any()
    assert not (mask & chosen_q & rejected_k).any()
    assert torch.equal(
        packed["response_lengths"],
        torch.tensor([len(p.chosen_ids) for p in pairs] + [len(p.rejected_ids) for p in pairs]),
    )


@pytest.mark.parametrize("make", [tiny_llama, tiny_gpt])
def test_packed_sums_and_gradients_equal_padded_rows(make) -> None:
    model = make(100)
    model.config.dropout = 0.0
    get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
    assert can_pack(model)
    pairs = _pairs(1)
    padded = collate_pairs(pairs, pad_id=0)
    want = token_logprobs(model, padded["input_ids"], padded["attention_mask"], padded["response_mask"]).logprobs.sum(
        -1
    )
    got = response_logprob_sums(model, pair_rows(pairs, 0, pack=True))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(response_logprob_sums(model, pair_rows(pairs, 0, pack=False)), want)
    weights = torch.arange(1.0, 15.0)
    grads = []
    for sums in (want, got):
        model.zero_grad()
        (sums * weights).sum().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4 * float(b.abs().max()))  # float rounding only
    assert pair_rows(pairs, 0, pack=True)["tokens"] == int(padded["attention_mask"].sum())


def test_what_cannot_be_packed() -> None:
    model = tiny_llama(100)
    get_peft_model(model, PromptConfig(num_virtual_tokens=4))
    assert not can_pack(model)  # virtual tokens in front of every row
    assert not can_pack(tiny_models.tiny_gpt(0, vocab_size=100, n_head=4, position="alibi"))  # packed distances
    assert can_pack(tiny_models.tiny_gpt(0, vocab_size=100, n_head=4))
    with pytest.raises(ValueError, match="line 9 has no prompt token"):
        pack_pairs([PreferencePair([], [1], [2], 0.0, 9)])
