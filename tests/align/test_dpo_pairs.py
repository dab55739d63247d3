"""`llmlab.align.pairs.build_pairs_by_sampling`: best and worst of n sampled completions per prompt, ranked by
the reward; reproducible by seed without touching the global RNG; the pairs load as DPO data."""

from __future__ import annotations

import pytest
import torch
from align_helpers import tiny_llama, write_jsonl

from llmlab.align.pairs import build_pairs_by_sampling, completion_text
from llmlab.align.rollout import sample_rollout
from llmlab.config.sampling import SamplingConfig
from llmlab.data.preference import load_preference_pairs, load_prompt_records


def test_pairs_are_the_best_and_worst_samples(tmp_path, tokenizer, prompts_file) -> None:
    model = tiny_llama(tokenizer.vocab_size).eval()
    prompts = load_prompt_records(prompts_file, tokenizer, template="plain")[:8]
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6)
    stops, seen = [tokenizer.eos_id], []

    def reward(texts: list[str], completions: list[str], records: list[dict]) -> torch.Tensor:
        assert texts == [r["prompt"] for r in records]
        seen.append(list(completions))
        return torch.tensor([float(len(c)) for c in completions])  # longer is better

    torch.manual_seed(123)
    state = torch.get_rng_state()
    kw = dict(sampling=sampling, eos_ids=stops, pad_id=tokenizer.pad_id, n_samples=3, seed=7)
    pairs = build_pairs_by_sampling(model, tokenizer, prompts, reward, **kw)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator is untouched
    assert build_pairs_by_sampling(model, tokenizer, prompts, reward, **kw) == pairs  # seeded
    assert pairs != build_pairs_by_sampling(model, tokenizer, prompts, reward, **{**kw, "seed": 8})

    torch.manual_seed(7)  # the same samples, drawn by hand
    rollout = sample_rollout(model, [p.prompt_ids for p in prompts], n_per_prompt=3, sampling=sampling,
                             eos_ids=stops, pad_id=tokenizer.pad_id)  # fmt: skip
    texts = [completion_text(tokenizer, r, stops) for r in rollout.responses()]
    assert texts == seen[0]
    expected = []
    for i, p in enumerate(prompts):
        group = texts[3 * i : 3 * i + 3]
        longest, shortest = max(group, key=len), min(group, key=len)
        if len(longest) > len(shortest) and shortest.strip():
            expected.append((p.record["prompt"], longest, shortest))
    assert [(q["prompt"], q["chosen"], q["rejected"]) for q in pairs] == expected and pairs
    assert all(q["chosen_reward"] > q["rejected_reward"] for q in pairs)

    loaded = load_preference_pairs(write_jsonl(tmp_path / "pairs.jsonl", pairs), tokenizer, template="plain")
    assert len(loaded) == len(pairs)


def test_ties_are_skipped_and_n_samples_checked(tokenizer, prompts_file) -> None:
    model = tiny_llama(tokenizer.vocab_size).eval()
    prompts = load_prompt_records(prompts_file, tokenizer, template="plain")[:4]
    kw = dict(sampling=SamplingConfig(max_new_tokens=4), eos_ids=[tokenizer.eos_id], pad_id=tokenizer.pad_id)
    flat = lambda p, c, r: [1.0] * len(c)  # noqa: E731
    assert build_pairs_by_sampling(model, tokenizer, prompts, flat, n_samples=2, **kw) == []
    with pytest.raises(ValueError, match="n_samples must be >= 2"):
        build_pairs_by_sampling(model, tokenizer, prompts, flat, n_samples=1, **kw)
