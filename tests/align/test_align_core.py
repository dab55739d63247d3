"""The shared pieces of `llmlab.align`: response log-probs, the reference policy, rollouts, the config."""

from __future__ import annotations

import pytest
import tiny_models
import torch

from llmlab.align.logprobs import token_logprobs
from llmlab.align.reference import REFERENCE_MODES, ReferencePolicy
from llmlab.align.rollout import right_pad_rows, sample_rollout
from llmlab.config.sampling import SamplingConfig
from llmlab.peft import LoraConfig, get_peft_model
from llmlab.recipes import align_config


def _full_logprobs(model, ids, mask):  # noqa: ANN001, ANN202
    logp = model(ids).logits.float().log_softmax(-1)  # (B, T, V)
    out = torch.zeros(ids.shape)
    out[:, 1:] = logp[:, :-1].gather(-1, ids[:, 1:, None]).squeeze(-1)
    return out * mask


def test_token_logprobs_equal_the_full_logits_and_ignore_padding():
    model = tiny_models.tiny_llama(0)
    ids, attn, resp = right_pad_rows([[1, 2, 3], [4, 5]], [[6, 7], [8, 9, 10, 11]], pad_id=0)
    lp = token_logprobs(model, ids, attn, resp, with_entropy=True)
    alone = [
        _full_logprobs(model, ids[i : i + 1, : int(attn[i].sum())], resp[i : i + 1, : int(attn[i].sum())])
        for i in range(2)
    ]
    for i, ref in enumerate(alone):
        torch.testing.assert_close(lp.logprobs[i, : ref.shape[1]], ref[0], atol=1e-5, rtol=1e-5)
    assert (lp.logprobs[resp == 0] == 0).all() and (lp.entropy[resp == 1] > 0).all()
    with pytest.raises(ValueError, match="column 0"):
        token_logprobs(model, ids, attn, torch.ones_like(resp))


def test_reference_is_the_policy_with_adapters_off_or_a_frozen_copy():
    model = tiny_models.tiny_llama(0)
    ids, attn, resp = right_pad_rows([[1, 2, 3]], [[4, 5, 6]], pad_id=0)
    before = token_logprobs(model, ids, attn, resp).logprobs
    full = ReferencePolicy(model)
    assert full.mode == "copy"
    with torch.no_grad():
        model.lm_head.weight.add_(1.0)  # the policy moves, the copy does not
    torch.testing.assert_close(full.token_logprobs(ids, attn, resp).logprobs, before)
    lora = tiny_models.tiny_llama(0)
    get_peft_model(lora, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    ref = ReferencePolicy(lora)
    assert ref.mode == "adapters" and ref.copy is None
    torch.testing.assert_close(ref.token_logprobs(ids, attn, resp).logprobs, before)
    assert not torch.allclose(token_logprobs(lora, ids, attn, resp).logprobs, before)
    assert tuple(REFERENCE_MODES) == align_config.REFERENCE_MODES


def test_rollout_rows_hold_prompt_then_response_and_reproduce_with_the_rng():
    model = tiny_models.tiny_llama(0)
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6)
    torch.manual_seed(3)
    r = sample_rollout(model, [[1, 2, 3], [4, 5]], n_per_prompt=3, sampling=sampling, eos_ids=[0], pad_id=0)
    assert r.input_ids.shape[0] == 6 and r.prompt_index.tolist() == [0, 0, 0, 1, 1, 1]
    for row, plen, rlen in zip(r.input_ids, r.prompt_lengths, r.response_lengths, strict=True):
        assert row[:plen].tolist() in ([1, 2, 3], [4, 5]) and 1 <= rlen <= 6
    assert (r.response_mask.sum(-1) == r.response_lengths).all()
    torch.manual_seed(3)
    again = sample_rollout(model, [[1, 2, 3], [4, 5]], n_per_prompt=3, sampling=sampling, eos_ids=[0], pad_id=0)
    assert torch.equal(again.input_ids, r.input_ids) and model.training is False


def test_align_config_names_the_bad_setting():
    with pytest.raises(ValueError, match="needs a reward"):
        align_config.load_align_config(None, ["data.train=x.jsonl"], "grpo").validate()
    with pytest.raises(ValueError, match="dpo.loss"):
        align_config.load_align_config(None, ["data.train=x.jsonl", "dpo.loss=kto"], "dpo").validate()
    with pytest.raises(ValueError, match="multiple of ppo.minibatch_size"):
        cfg = align_config.load_align_config(
            None, ["data.train=x.jsonl", "reward.functions=[arithmetic]", "ppo.prompts_per_rollout=6",
                   "ppo.minibatch_size=4"], "ppo")  # fmt: skip
        cfg.validate()


def test_run_report_has_facts_curves_and_samples(tmp_path):
    import json

    from llmlab.recipes.align import write_run_report

    rows = [{"iter": i, "loss": 1.0 / i, "reward": 0.1 * i, "kl": 0.01 * i} for i in range(1, 6)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = write_run_report(tmp_path, "ppo", {"final_train_loss": 0.2, "samples": [("The film", " was great")]})
    text = path.read_text(encoding="utf-8")
    assert "| final_train_loss | 0.2000 |" in text and "was great" in text and "curves.png" in text
    assert (tmp_path / "curves.png").stat().st_size > 1000 and (tmp_path / "loss_curve.png").is_file()
