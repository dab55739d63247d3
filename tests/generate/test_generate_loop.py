"""The decoding loop, logits processors and samplers of `llmlab.generate`."""

from __future__ import annotations

import math

import pytest
import tiny_models
import torch
from tiny_models import spread

from llmlab.generate import (
    GreedySampler,
    MultinomialSampler,
    TopKProcessor,
    TopPProcessor,
    build_processors,
    generate,
    stream_generate,
)
from llmlab.models.gpt import GPT

VOCAB = 61


def tiny_gpt(**overrides: object) -> GPT:
    """`nano-char` with context 16 and larger weights than the 0.02-std init (greedy decoding varies)."""
    return spread(tiny_models.tiny_gpt(0, **{"vocab_size": VOCAB, "block_size": 16, **overrides}))


def reference_greedy(model: GPT, ids: torch.Tensor, n: int) -> torch.Tensor:
    """Full recompute of the last block_size tokens at every step, argmax (nanoGPT's loop)."""
    block = model.config.block_size
    with torch.no_grad():
        for _ in range(n):
            logits = model(ids[:, -block:]).logits[:, -1, :]
            ids = torch.cat([ids, logits.argmax(-1, keepdim=True)], dim=1)
    return ids


@pytest.mark.parametrize(
    "overrides",
    [{}, {"position": "rope", "n_kv_head": 1, "norm": "rmsnorm", "mlp": "swiglu"}],
    ids=["gpt2-style", "llama-style-mqa"],
)
def test_greedy_with_cache_equals_full_recompute(overrides: dict) -> None:
    model = tiny_gpt(**overrides)
    prompt = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))
    # 5 + 20 tokens > block_size 16: the loop must crop the context once it is full.
    expected = reference_greedy(model, prompt, 20)
    with_cache = generate(model, prompt, 20, temperature=0.0, use_cache=True)
    without_cache = generate(model, prompt, 20, temperature=0.0, use_cache=False)
    assert with_cache.shape == (2, 25)
    assert torch.equal(with_cache, expected)
    assert torch.equal(without_cache, expected)
    assert len(set(expected[0, 5:].tolist())) > 1  # a non-trivial sequence was compared


def test_prompt_longer_than_context_is_cropped() -> None:
    model = tiny_gpt()
    prompt = torch.randint(0, VOCAB, (1, 40), generator=torch.Generator().manual_seed(2))
    out = generate(model, prompt, 5, temperature=0.0)
    assert torch.equal(out, reference_greedy(model, prompt, 5))
    assert torch.equal(out[:, :40], prompt)


def test_seeded_sampling_is_reproducible_and_seed_dependent() -> None:
    model = tiny_gpt()
    prompt = torch.zeros(3, 1, dtype=torch.long)
    a = generate(model, prompt, 12, temperature=1.0, seed=7)
    torch.manual_seed(123)  # the global RNG must not matter
    b = generate(model, prompt, 12, temperature=1.0, seed=7)
    c = generate(model, prompt, 12, temperature=1.0, seed=8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    gen = torch.Generator().manual_seed(7)
    assert torch.equal(generate(model, prompt, 12, generator=gen), a)


def test_temperature_zero_is_greedy_whatever_the_filters() -> None:
    model = tiny_gpt()
    prompt = torch.randint(0, VOCAB, (2, 3), generator=torch.Generator().manual_seed(3))
    expected = reference_greedy(model, prompt, 10)
    assert torch.equal(generate(model, prompt, 10, temperature=0, top_k=3, top_p=0.5, seed=1), expected)
    # top_k=1 sampling is also greedy
    assert torch.equal(generate(model, prompt, 10, temperature=1.3, top_k=1, seed=5), expected)


def test_top_k_keeps_exactly_k_candidates_even_with_ties() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.5, 2.0], [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]])
    out = TopKProcessor(2)(torch.zeros(2, 1, dtype=torch.long), logits)
    assert torch.isfinite(out).sum(-1).tolist() == [2, 2]
    kept = torch.isfinite(out[0]).nonzero().flatten().tolist()
    assert set(kept) <= {1, 2, 3}
    assert torch.equal(out[torch.isfinite(out)], logits[torch.isfinite(out)])  # kept logits are unchanged
    assert torch.equal(TopKProcessor(100)(None, logits), logits)  # k >= vocab keeps all
    with pytest.raises(ValueError, match="top_k"):
        TopKProcessor(0)


def test_top_k_sampling_draws_only_top_candidates() -> None:
    logits = torch.log(torch.tensor([[0.05, 0.4, 0.05, 0.3, 0.2]])).repeat(2000, 1)
    filtered = build_processors(temperature=1.0, top_k=2)(torch.zeros(2000, 1, dtype=torch.long), logits)
    draws = MultinomialSampler(torch.Generator().manual_seed(0))(filtered)
    assert set(draws.tolist()) == {1, 3}
    frac_1 = (draws == 1).float().mean().item()
    assert abs(frac_1 - 0.4 / 0.7) < 0.05  # renormalised over the kept tokens


def _kept(p: float, probs: list[float]) -> list[int]:
    logits = torch.log(torch.tensor([probs]))
    out = TopPProcessor(p)(torch.zeros(1, 1, dtype=torch.long), logits)
    return torch.isfinite(out[0]).nonzero().flatten().tolist()


def test_top_p_keeps_the_crossing_token_and_edge_cases() -> None:
    probs = [0.15, 0.5, 0.05, 0.3]  # sorted: 0.5 (id 1), 0.3 (id 3), 0.15 (id 0), 0.05 (id 2)
    assert _kept(0.6, probs) == [1, 3]  # 0.5 < 0.6, so the token crossing 0.6 (0.3) is kept
    assert _kept(0.81, probs) == [0, 1, 3]
    assert _kept(0.45, probs) == [1]
    assert _kept(1.0, probs) == [0, 1, 2, 3]  # p = 1 keeps everything
    assert _kept(1e-9, probs) == [1]  # a tiny p still keeps the most likely token
    assert _kept(1e-9, [0.25, 0.25, 0.25, 0.25]) != []  # at least one token with a flat distribution
    with pytest.raises(ValueError, match="top_p"):
        TopPProcessor(0.0)
    with pytest.raises(ValueError, match="top_p"):
        TopPProcessor(1.5)


def test_processor_order_temperature_before_top_p() -> None:
    # At temperature 0.1 the distribution is sharp: p=0.9 keeps only the top token; at 1.0 it keeps two.
    logits = torch.log(torch.tensor([[0.6, 0.35, 0.05]]))
    ids = torch.zeros(1, 1, dtype=torch.long)
    sharp = build_processors(temperature=0.1, top_p=0.9)(ids, logits)
    flat = build_processors(temperature=1.0, top_p=0.9)(ids, logits)
    assert torch.isfinite(sharp).sum().item() == 1
    assert torch.isfinite(flat).sum().item() == 2


def test_eos_stops_and_pads_finished_rows() -> None:
    model = tiny_gpt()
    prompt = torch.randint(0, VOCAB, (2, 4), generator=torch.Generator().manual_seed(4))
    free = reference_greedy(model, prompt, 12)
    eos = int(free[0, 4 + 2])  # row 0 would produce it at step 3
    out = generate(model, prompt, 12, temperature=0, eos_token_id=eos, pad_token_id=VOCAB - 1)
    row0 = out[0, 4:].tolist()
    first = row0.index(eos)
    assert first <= 2
    assert all(t == VOCAB - 1 for t in row0[first + 1 :])  # padded after eos
    one = generate(model, prompt[:1], 12, temperature=0, eos_token_id=eos)
    assert one.shape[1] == 4 + first + 1  # a single row stops right at eos
    assert int(one[0, -1]) == eos


def test_stream_generate_yields_each_step() -> None:
    model = tiny_gpt()
    prompt = torch.zeros(2, 1, dtype=torch.long)
    steps = list(stream_generate(model, prompt, 6, temperature=0))
    assert len(steps) == 6 and all(s.shape == (2,) and s.dtype == torch.long for s in steps)
    assert torch.equal(torch.stack(steps, 1), generate(model, prompt, 6, temperature=0)[:, 1:])


def test_generate_restores_training_mode_and_validates() -> None:
    model = tiny_gpt().train()
    generate(model, torch.zeros(1, 1, dtype=torch.long), 2)
    assert model.training
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="temperature"):
        generate(model, torch.zeros(1, 1, dtype=torch.long), 2, temperature=-1.0)
    assert generate(model, torch.ones(1, 3, dtype=torch.long), 0).shape == (1, 3)


def test_samplers() -> None:
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    assert GreedySampler()(logits).tolist() == [1, 0]
    draws = MultinomialSampler(torch.Generator().manual_seed(0))(logits.repeat(500, 1)).view(500, 2)
    assert abs((draws[:, 0] == 1).float().mean().item() - math.exp(5) / (1 + math.exp(5) + math.e)) < 0.05


def test_a_prefilled_kv_cache_continues_like_a_fresh_one() -> None:
    """`kv_cache=` holding the first tokens of the prompt: only the rest is run, the tokens are the same."""
    model = tiny_gpt()
    prompt = torch.randint(0, VOCAB, (1, 9), generator=torch.Generator().manual_seed(0))
    fresh = [int(t[0]) for t in stream_generate(model, prompt, 6, temperature=0)]
    cache = model.make_kv_cache(1, 15)
    with torch.no_grad():
        model(prompt[:, :5], kv_cache=cache)  # the first 5 prompt tokens, as an earlier chat turn would leave them
    reused = [int(t[0]) for t in stream_generate(model, prompt, 6, temperature=0, kv_cache=cache)]
    assert reused == fresh and cache.seq_len == 9 + 5  # the last generated token is never fed
    full = model.make_kv_cache(1, 15)
    full.advance(9)
    with pytest.raises(ValueError, match="must hold fewer"):
        next(stream_generate(model, prompt, 6, temperature=0, kv_cache=full))
    with pytest.raises(ValueError, match="do not fit the kv_cache"):
        next(stream_generate(model, prompt, 6, temperature=0, kv_cache=model.make_kv_cache(1, 12)))
