"""`llmlab.align.packing`: packed rows score every sequence exactly as the padded rows do (block-diagonal mask,
restarting positions), with fewer positions; models that cannot be packed are recognised."""

from __future__ import annotations

import torch
from align_helpers import tiny_gpt, tiny_llama

from llmlab.align.logprobs import token_logprobs
from llmlab.align.packing import can_pack, pack_rows, response_logprob_sums, score_rows
from llmlab.align.rollout import right_pad_rows
from llmlab.peft import LoraConfig, PromptConfig, get_peft_model


def _rows(seed: int = 0):  # noqa: ANN202
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(3, 90, (int(n),), generator=g).tolist() for n in (3, 7, 2, 5, 4, 6)]
    responses = [torch.randint(3, 90, (int(n),), generator=g).tolist() for n in (9, 2, 4, 1, 11, 3)]
    return right_pad_rows(prompts, responses, pad_id=0)


def test_pack_rows_layout() -> None:
    ids, attn, resp = _rows()
    packed = pack_rows(ids, attn, resp)
    assert packed["input_ids"].shape[1] == int(attn.sum(-1).max())
    assert packed["input_ids"].shape[0] < ids.shape[0]  # fewer rows than the padded batch
    assert int(packed["attention_mask"].sum()) == int(attn.sum())  # every real token once, no padding added
    for i in range(ids.shape[0]):
        where = packed["sequence"] == i
        n = int(attn[i].sum())
        assert torch.equal(packed["input_ids"][where], ids[i, :n])
        assert torch.equal(packed["position_ids"][where], torch.arange(n))
        assert torch.equal(packed["response_mask"][where], resp[i, :n])
        assert packed["segment_ids"][where].unique().numel() == 1


def test_packed_sums_equal_padded_sums_with_gradients() -> None:
    for make in (tiny_llama, tiny_gpt):
        model = make(100)
        model.config.dropout = 0.0
        get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False))
        assert can_pack(model)
        ids, attn, resp = _rows(1)
        padded = token_logprobs(model, ids, attn, resp).logprobs.sum(-1)
        packed = response_logprob_sums(model, score_rows(ids, attn, resp, pack=True))
        torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(response_logprob_sums(model, score_rows(ids, attn, resp, pack=False)), padded)
        grads = []
        for sums in (padded, packed):
            model.zero_grad()
            (sums * torch.arange(1.0, 7.0)).sum().backward(retain_graph=True)
            grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
        for a, b in zip(*grads, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_prompt_tuning_is_not_packed() -> None:
    model = tiny_llama(100)
    get_peft_model(model, PromptConfig(num_virtual_tokens=4))
    assert not can_pack(model)
