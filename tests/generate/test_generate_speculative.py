"""Speculative decoding (draft model, prompt lookup): output identical to the target's plain greedy decoding."""

from __future__ import annotations

import copy

import pytest
import torch
from tiny_models import spread, tiny_gpt, tiny_llama

from llmlab.generate import generate, prompt_lookup_candidates, speculative_generate
from llmlab.models.llama import Llama

VOCAB = 61
# `llama-tiny` with 4 KV heads (no GQA), untied embeddings and a context of 96.
LLAMA = dict(num_key_value_heads=None, max_position_embeddings=96, tie_word_embeddings=False)


@pytest.fixture(scope="module")
def target() -> Llama:
    return spread(tiny_llama(vocab_size=VOCAB, **LLAMA), seed=0)


def prompt_with_repeats() -> torch.Tensor:
    x = torch.randint(0, VOCAB, (1, 20), generator=torch.Generator().manual_seed(2))
    return torch.cat([x, x[:, :10]], dim=1)  # the tail repeats the start: prompt lookup finds matches


def test_prompt_lookup_candidates() -> None:
    assert prompt_lookup_candidates([1, 2, 3, 4, 5, 9, 2, 3], max_ngram=3, num_tokens=2) == [4, 5]
    assert prompt_lookup_candidates([7, 1, 2, 8, 1, 2, 9, 1, 2], max_ngram=2, num_tokens=3) == [8, 1, 2]  # earliest
    assert prompt_lookup_candidates([1, 2, 3, 4], max_ngram=3, num_tokens=5) == []  # nothing recurs
    assert prompt_lookup_candidates([5, 6, 7, 6], max_ngram=3, num_tokens=5) == [7, 6]  # falls back to a 1-gram


@pytest.mark.parametrize("k", [1, 4, 8])
def test_prompt_lookup_equals_greedy(target: Llama, k: int) -> None:
    x = prompt_with_repeats()
    ref = generate(target, x, 40, temperature=0)
    out, stats = speculative_generate(target, x, 40, num_draft_tokens=k)
    assert torch.equal(out, ref)
    assert stats.new_tokens == 40 and stats.proposed > 0
    assert stats.target_forwards <= 40


def test_draft_model_equals_greedy_with_partial_acceptance(target: Llama) -> None:
    x = prompt_with_repeats()
    ref = generate(target, x, 40, temperature=0)
    # A perturbed copy of the target: it agrees often but not always, so both accept and reject paths run.
    draft = copy.deepcopy(target)
    with torch.no_grad():
        for p in draft.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5)) * 0.05)
    out, stats = speculative_generate(target, x, 40, draft_model=draft, num_draft_tokens=4)
    assert torch.equal(out, ref)
    assert 0.0 < stats.acceptance_rate < 1.0
    assert stats.target_forwards < 40  # accepted guesses saved target forwards
    # The target as its own draft accepts everything: k + 1 tokens per target forward.
    same, stats = speculative_generate(target, x, 40, draft_model=target, num_draft_tokens=4)
    assert torch.equal(same, ref) and stats.acceptance_rate == 1.0 and stats.target_forwards == 8
    # A draft of another architecture (GPT) with the same vocabulary: still the target's greedy output.
    gpt = spread(tiny_gpt(vocab_size=VOCAB, block_size=96, n_layer=1), seed=1)
    other, _ = speculative_generate(target, x, 40, draft_model=gpt, num_draft_tokens=3)
    assert torch.equal(other, ref)


def test_eos_stops_like_greedy(target: Llama) -> None:
    x = prompt_with_repeats()
    free = generate(target, x, 30, temperature=0)
    eos = int(free[0, 30 + 6])
    ref = generate(target, x, 30, temperature=0, eos_token_id=eos)
    out, _ = speculative_generate(target, x, 30, eos_token_id=eos, num_draft_tokens=6)
    assert torch.equal(out, ref) and int(out[0, -1]) == eos


def test_speculative_validates(target: Llama) -> None:
    x = prompt_with_repeats()
    with pytest.raises(ValueError, match=r"prompt of 30 tokens \+ max_new_tokens=70 exceeds the model's context of 96"):
        speculative_generate(target, x, 70)
    with pytest.raises(ValueError, match="one prompt"):
        speculative_generate(target, x.repeat(2, 1), 4)
    small_vocab = spread(tiny_llama(vocab_size=50, **LLAMA), seed=0)
    with pytest.raises(ValueError, match="vocab_size 50 but model has 61"):
        speculative_generate(target, x, 4, draft_model=small_vocab)


def test_prompt_lookup_smollm2_equals_greedy(smollm2) -> None:
    model, tok = smollm2
    text = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine."
    chat = f"<|im_start|>user\nRepeat this text exactly: {text}<|im_end|>\n<|im_start|>assistant\n"
    x = torch.tensor([tok.encode(chat)])
    ref = generate(model, x, 10, temperature=0, eos_token_id=tok.eos_id)
    out, stats = speculative_generate(model, x, 10, eos_token_id=tok.eos_id, num_draft_tokens=6)
    assert torch.equal(out, ref)
    assert stats.acceptance_rate > 0.3 and stats.target_forwards < stats.new_tokens
