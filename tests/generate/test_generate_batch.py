"""Batched generation with left padding: equal, token for token, to generating each prompt alone."""

from __future__ import annotations

import pytest
import torch
from tiny_models import spread, tiny_gpt, tiny_llama

from llmlab.generate import generate, generate_batch, left_pad

VOCAB = 61


MODELS = {
    "llama-gqa": lambda: tiny_llama(vocab_size=VOCAB, max_position_embeddings=32, tie_word_embeddings=False),
    "gpt-learned": lambda: tiny_gpt(vocab_size=VOCAB),
    "gpt-rope": lambda: tiny_gpt(vocab_size=VOCAB, position="rope"),
    "gpt-alibi": lambda: tiny_gpt(vocab_size=VOCAB, position="alibi"),
}
_gen = torch.Generator().manual_seed(3)
PROMPTS = [torch.randint(0, VOCAB, (n,), generator=_gen).tolist() for n in (3, 7, 1, 5)]


def one_by_one(model, prompts, n, **kw) -> list[torch.Tensor]:
    return [generate(model, torch.tensor([p]), n, temperature=0, **kw)[0] for p in prompts]


@pytest.mark.parametrize("name", list(MODELS))
def test_batch_equals_one_by_one(name: str) -> None:
    model = spread(MODELS[name](), seed=0)
    for n in (12, 40):  # 40: rows outgrow block_size=32 and the loop crops the (padded) context
        batch = generate_batch(model, PROMPTS, n, temperature=0)
        alone = one_by_one(model, PROMPTS, n)
        for b, a, p in zip(batch, alone, PROMPTS, strict=True):
            assert torch.equal(b, a), (name, n, len(p))
        assert sum(len(set(a[len(p) :].tolist())) > 1 for a, p in zip(alone, PROMPTS, strict=True)) >= 3


def test_positions_matter_for_left_padding() -> None:
    """Without position ids the padded rows would be shifted: the test above would catch a missing offset."""
    model = spread(MODELS["gpt-learned"](), seed=0)
    ids, mask = left_pad(PROMPTS, 0)
    with torch.no_grad():
        right = model(ids, attention_mask=mask).logits[:, -1]  # positions 0..T-1 for every row (wrong)
    alone = torch.stack([model(torch.tensor([p])).logits[0, -1] for p in PROMPTS])
    assert not torch.allclose(right[0], alone[0], atol=1e-3)  # row 0 is padded: plain positions differ
    torch.testing.assert_close(right[1], alone[1])  # row 1 (the longest) has no padding


def test_batch_eos_cuts_each_row_and_sampling_is_seeded() -> None:
    model = spread(MODELS["llama-gqa"](), seed=0)
    free = one_by_one(model, PROMPTS, 12)
    eos = int(free[1][len(PROMPTS[1]) + 3])  # row 1 emits it at its 4th step
    batch = generate_batch(model, PROMPTS, 12, temperature=0, eos_token_id=eos)
    alone = one_by_one(model, PROMPTS, 12, eos_token_id=eos)
    assert [b.tolist() for b in batch] == [a.tolist() for a in alone]
    assert len(batch[1]) <= len(PROMPTS[1]) + 4 and int(batch[1][-1]) == eos
    s1 = generate_batch(model, PROMPTS, 8, temperature=1.0, top_k=10, seed=4)
    s2 = generate_batch(model, PROMPTS, 8, temperature=1.0, top_k=10, seed=4)
    assert all(torch.equal(a, b) for a, b in zip(s1, s2, strict=True))


def test_left_pad_layout_and_errors() -> None:
    ids, mask = left_pad([[5, 6], [7, 8, 9]], pad_token_id=0)
    assert ids.tolist() == [[0, 5, 6], [7, 8, 9]]
    assert mask.tolist() == [[0, 1, 1], [1, 1, 1]]
    with pytest.raises(ValueError, match="non-empty"):
        left_pad([[1], []], 0)
    model = spread(MODELS["gpt-learned"](), seed=0)
    with pytest.raises(ValueError, match="left-padded"):
        generate(model, torch.tensor([[1, 2, 0]]), 2, attention_mask=torch.tensor([[1, 1, 0]]))
    with pytest.raises(ValueError, match="attention_mask has shape"):
        generate(model, torch.tensor([[1, 2, 3]]), 2, attention_mask=torch.tensor([[1, 1]]))
    with pytest.raises(ValueError, match="builds the attention_mask"):
        generate_batch(model, PROMPTS, 2, attention_mask=mask)


def test_batch_smollm2_equals_one_by_one(smollm2) -> None:
    model, tok = smollm2
    texts = [
        "The capital of France is",
        "Once upon a time, in a small village by the sea, there",
        "Question: what is 2 + 2? Answer:",
    ]
    prompts = [tok.encode(t) for t in texts]
    assert len({len(p) for p in prompts}) == 3
    batch = generate_batch(model, prompts, 8, temperature=0, eos_token_id=tok.eos_id)
    alone = one_by_one(model, prompts, 8, eos_token_id=tok.eos_id)
    assert [b.tolist() for b in batch] == [a.tolist() for a in alone]
