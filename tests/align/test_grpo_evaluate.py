"""`llmlab.align.evaluate.evaluate_policy`: reward, Monte-Carlo KL, length; reproducible, global RNG untouched."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import tiny_models
import torch

from llmlab.align.evaluate import evaluate_policy
from llmlab.align.reference import ReferencePolicy
from llmlab.config.sampling import SamplingConfig
from llmlab.peft import LoraConfig, get_peft_model


@dataclass
class Prompt:  # the fields of llmlab.data.preference.PromptRecord that evaluate_policy reads
    prompt_ids: list[int]
    text: str
    record: dict = field(default_factory=dict)


class ByteTokenizer:
    def decode(self, ids, skip_special_tokens=False):
        return " ".join(str(i) for i in ids)


PROMPTS = [Prompt([1 + i, 5, 7 + i][: 1 + i % 3], f"p{i}", {"i": i}) for i in range(5)]
SAMPLING = SamplingConfig(temperature=1.0, max_new_tokens=6)


def count_tokens(prompts, completions, records):
    return [float(len(c.split())) + 100 * r["i"] for c, r in zip(completions, records, strict=True)]


def lora_policy(init_lora_weights: bool):
    model = tiny_models.tiny_llama(0)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=init_lora_weights))
    return model.train()


def run(model, reference, **kw):
    kw = {"tokenizer": ByteTokenizer(), "sampling": SAMPLING, "eos_ids": [2], "pad_id": 0, "batch_size": 2} | kw
    return evaluate_policy(model, reference, PROMPTS, count_tokens, **kw)


def test_reproducible_private_rng_and_mode_restored():
    model = lora_policy(False)
    torch.manual_seed(11)
    state = torch.get_rng_state()
    a = run(model, ReferencePolicy(model), samples_per_prompt=2, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator did not move
    assert model.training
    b = run(model, ReferencePolicy(model), samples_per_prompt=2, seed=5)
    assert a == b
    c = run(model, ReferencePolicy(model), samples_per_prompt=2, seed=6)
    assert [s["completion"] for s in c.samples] != [s["completion"] for s in a.samples]


def test_samples_rewards_lengths_match():
    model = lora_policy(False)
    res = run(model, None, samples_per_prompt=3)
    assert len(res.samples) == 3 * len(PROMPTS)
    assert [s["prompt"] for s in res.samples] == [p.text for p in PROMPTS for _ in range(3)]
    for s, p in zip(res.samples, [p for p in PROMPTS for _ in range(3)], strict=True):
        ended = s["length"] > len(s["completion"].split())  # the EOS token is counted, not decoded
        assert s["length"] == len(s["completion"].split()) + int(ended)
        assert s["reward"] == len(s["completion"].split()) + 100 * p.record["i"]
    rewards = torch.tensor([s["reward"] for s in res.samples], dtype=torch.float64)
    assert res.reward_mean == pytest.approx(float(rewards.mean()))
    assert res.reward_stderr == pytest.approx(float(rewards.std() / len(rewards) ** 0.5))
    assert res.length_mean == pytest.approx(sum(s["length"] for s in res.samples) / len(res.samples))
    assert res.kl_mean == 0 and res.metrics("val_")["val_kl_mean"] == 0


def test_kl_is_zero_for_the_reference_itself_and_positive_after_a_change():
    same = lora_policy(True)  # LoRA B = 0: the policy equals its reference
    assert run(same, ReferencePolicy(same)).kl_mean == pytest.approx(0.0, abs=1e-6)
    moved = tiny_models.tiny_llama(0)
    ref = ReferencePolicy(moved)  # a frozen copy
    with torch.no_grad():
        moved.lm_head.weight.mul_(3.0)
    res = run(moved, ref, samples_per_prompt=16, batch_size=5)
    assert res.kl_mean > 3 * res.kl_stderr > 0
    greedy = run(moved, ref, sampling=SamplingConfig(temperature=0, max_new_tokens=6))
    assert greedy == run(moved, ref, sampling=SamplingConfig(temperature=0, max_new_tokens=6), seed=9)


def test_errors():
    with pytest.raises(ValueError, match="samples_per_prompt"):
        run(lora_policy(True), None, samples_per_prompt=0)
