"""Reward functions and `RewardSources` (llmlab.align.rewards)."""

from __future__ import annotations

import sys
import types

import pytest
import torch

from llmlab.align.rewards import (
    REWARD_FUNCTIONS,
    RewardSources,
    arithmetic_reward,
    first_number,
    load_reward_function,
)
from llmlab.recipes.align_config import RewardConfig


def double_length(prompts, completions, records):  # a module:function reward for the tests
    return torch.tensor([2.0 * len(c) for c in completions])


def test_first_number_and_arithmetic():
    assert first_number("The answer is 42.") == 42
    assert first_number("-7 apples") == -7
    assert first_number("1,234 or 5") == 1234
    assert first_number("no digits") is None
    comps = [" 12", "It is 12.", "13", "twelve", " 3 + 9 = 12"]
    recs = [{"answer": 12}, {"answer": "12"}, {"answer": 12}, {"answer": 12}, {"answer": 12}]
    assert arithmetic_reward([""] * 5, comps, recs) == [1.0, 1.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="answer"):
        arithmetic_reward([""], ["1"], [{}])


def test_arithmetic_final_reads_the_last_number_of_the_first_line():
    from llmlab.align.rewards import arithmetic_final_reward

    comps = [" 45 + 59 = 104\n\nQuestion: 7", "\n104", " 45 + 59 = 103", "104 is wrong: 105", "none"]
    assert arithmetic_final_reward([""] * 5, comps, [{"answer": 104}] * 5) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert load_reward_function("arithmetic_final") is arithmetic_final_reward


def test_load_reward_function():
    assert load_reward_function("arithmetic") is REWARD_FUNCTIONS["arithmetic"]
    assert load_reward_function(f"{__name__}:double_length") is double_length
    with pytest.raises(ValueError, match="unknown reward function 'nope'"):
        load_reward_function("nope")
    with pytest.raises(ValueError, match="cannot import module"):
        load_reward_function("no_such_module_xyz:f")
    with pytest.raises(ValueError, match="has no function 'missing'"):
        load_reward_function(f"{__name__}:missing")


def test_sources_weighted_sum_breakdown_and_eos_penalty():
    cfg = RewardConfig(functions=["arithmetic", f"{__name__}:double_length"], weights=[2.0, 0.5],
                       missing_eos_penalty=1.0)  # fmt: skip
    src = RewardSources(cfg)
    assert src.names == ["arithmetic", "double_length"]
    comps, recs = ["5", "45"], [{"answer": 5}, {"answer": 5}]
    out = src(["p", "p"], comps, recs)
    assert out.dtype == torch.float32 and out.shape == (2,)
    assert out.tolist() == [2.0 * 1 + 0.5 * 2, 0.0 + 0.5 * 4]
    assert src.last_breakdown == {"reward_arithmetic": 0.5, "reward_double_length": 3.0}
    out = src(["p", "p"], comps, recs, ended=torch.tensor([True, False]))
    assert out.tolist() == [3.0, 1.0]
    assert src.last_breakdown["missing_eos"] == 0.5


def test_sources_errors():
    with pytest.raises(ValueError, match="no reward source"):
        RewardSources(RewardConfig())
    with pytest.raises(ValueError, match="weights has 2 values for 1"):
        RewardSources(RewardConfig(functions=["arithmetic"], weights=[1.0, 2.0]))
    src = RewardSources(RewardConfig(functions=[f"{__name__}:bad_count"]))
    with pytest.raises(ValueError, match="returned 1 values for 2 completions"):
        src(["a", "b"], ["x", "y"], [{}, {}])


def bad_count(prompts, completions, records):
    return [0.0]


class FakeScorer:
    def __init__(self, path, device):
        self.path, self.device = path, device

    def score(self, prompts, completions, batch_size=16):
        return torch.tensor([float(len(p) + len(c)) for p, c in zip(prompts, completions, strict=True)])


def test_reward_model_source_is_loaded_lazily(monkeypatch):
    fake = types.ModuleType("llmlab.align.reward_model")
    fake.load_reward_model = lambda path, device="cpu": FakeScorer(path, device)
    monkeypatch.setitem(sys.modules, "llmlab.align.reward_model", fake)
    src = RewardSources(RewardConfig(model="runs/rm", functions=["length"], weights=[1.0, 10.0]), device="cpu")
    assert src.names == ["model", "length"] and src.scorer.path == "runs/rm"
    out = src(["ab", "c"], ["x y", "z"], [{}, {}])
    assert out.tolist() == [5.0 + 20.0, 2.0 + 10.0]
    assert set(src.last_breakdown) == {"reward_model", "reward_length"}
    shared = RewardSources(RewardConfig(functions=[]), scorer=FakeScorer("given", "cpu"))
    assert shared(["a"], ["b"], [{}]).tolist() == [2.0]
