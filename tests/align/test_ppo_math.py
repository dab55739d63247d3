"""PPO's pieces (`llmlab.align.ppo`) against hand-computed cases and trl's PPO formulas (trl <= 0.11's
``compute_rewards`` / ``compute_advantages`` / ``loss`` / ``masked_whiten``, re-typed here: trl 1.x has no PPO)."""

from __future__ import annotations

import math

import pytest
import torch
from align_helpers import tiny_llama

from llmlab.align.logprobs import token_logprobs
from llmlab.align.ppo import (
    AdaptiveKLController,
    FixedKLController,
    PolicyWithValue,
    compute_gae,
    kl_penalised_rewards,
    ppo_losses,
    whiten,
)


# ------------------------------------------------------------------ trl's formulas (response-only tensors)
def trl_masked_mean(v, m):
    return (v * m).sum() / m.sum()


def trl_masked_whiten(v, m, shift_mean=True):
    mean = trl_masked_mean(v, m)
    var = trl_masked_mean((v - mean) ** 2, m) * m.sum() / (m.sum() - 1)
    out = (v - mean) * torch.rsqrt(var + 1e-8)
    return out + mean if not shift_mean else out


def trl_compute_advantages(values, rewards, mask, gamma, lam):
    lastgaelam, reversed_ = 0, []
    gen_len = rewards.shape[-1]
    values, rewards = values * mask, rewards * mask
    for t in reversed(range(gen_len)):
        nextvalues = values[:, t + 1] if t < gen_len - 1 else 0.0
        delta = rewards[:, t] + gamma * nextvalues - values[:, t]
        lastgaelam = delta + gamma * lam * lastgaelam
        reversed_.append(lastgaelam)
    advantages = torch.stack(reversed_[::-1]).transpose(0, 1)
    return advantages, advantages + values


def test_gae_hand_computed():
    # one row: prompt of 2 tokens, response of 3, one pad
    mask = torch.tensor([[0, 0, 1, 1, 1, 0]])
    rewards = torch.tensor([[9.0, 9.0, 0.1, 0.2, 1.0, 9.0]])
    values = torch.tensor([[9.0, 9.0, 0.5, 0.4, 0.3, 9.0]])
    gamma, lam = 0.9, 0.8
    d2 = 1.0 - 0.3
    d1 = 0.2 + gamma * 0.3 - 0.4
    d0 = 0.1 + gamma * 0.4 - 0.5
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    adv, ret = compute_gae(rewards, values, mask, gamma, lam)
    expected = torch.tensor([[0, 0, a0, a1, a2, 0]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, (expected + values) * mask)


def test_gae_matches_trl_on_right_padded_rows():
    torch.manual_seed(0)
    b, width = 5, 7
    prompt_lens = torch.tensor([1, 3, 2, 4, 1])
    resp_lens = torch.tensor([6, 2, 5, 1, 3])
    t_all = int((prompt_lens + resp_lens).max()) + 1
    mask = torch.zeros(b, t_all, dtype=torch.long)
    r_only, v_only, m_only = torch.zeros(b, width), torch.zeros(b, width), torch.zeros(b, width)
    rewards, values = torch.randn(b, t_all), torch.randn(b, t_all)
    for i in range(b):
        p, n = int(prompt_lens[i]), int(resp_lens[i])
        mask[i, p : p + n] = 1
        r_only[i, :n], v_only[i, :n], m_only[i, :n] = rewards[i, p : p + n], values[i, p : p + n], 1
    adv, ret = compute_gae(rewards, values, mask, 0.99, 0.95)
    ref_adv, ref_ret = trl_compute_advantages(v_only, r_only, m_only, 0.99, 0.95)
    for i in range(b):
        p, n = int(prompt_lens[i]), int(resp_lens[i])
        torch.testing.assert_close(adv[i, p : p + n], ref_adv[i, :n])
        torch.testing.assert_close(ret[i, p : p + n], ref_ret[i, :n])
    assert adv[mask == 0].abs().sum() == 0 and ret[mask == 0].abs().sum() == 0


def test_gae_gamma_lam_one_is_reward_to_go_minus_value():
    mask = torch.tensor([[0, 1, 1, 1]])
    rewards = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    values = torch.tensor([[0.0, 0.5, 0.25, 0.125]])
    adv, ret = compute_gae(rewards, values, mask, 1.0, 1.0)
    torch.testing.assert_close(ret, torch.tensor([[0.0, 6.0, 5.0, 3.0]]))
    torch.testing.assert_close(adv, ret - values * mask)


def test_whiten_matches_trl():
    torch.manual_seed(1)
    x, m = torch.randn(4, 6), (torch.rand(4, 6) > 0.3).long()
    out = whiten(x, m)
    torch.testing.assert_close(out[m.bool()], trl_masked_whiten(x, m)[m.bool()])
    assert out[~m.bool()].abs().sum() == 0
    assert abs(float(out[m.bool()].mean())) < 1e-5
    assert math.isclose(float(out[m.bool()].std()), 1.0, rel_tol=1e-4)
    torch.testing.assert_close(whiten(x, m, shift_mean=False)[m.bool()], trl_masked_whiten(x, m, False)[m.bool()])
    with pytest.raises(ValueError, match="at least 2"):
        whiten(x, torch.zeros_like(m).index_fill_(1, torch.tensor([0]), 0))


def test_kl_penalised_rewards():
    mask = torch.tensor([[0, 1, 1, 0], [0, 0, 1, 1]])
    logp = torch.tensor([[0.0, -1.0, -2.0, 0.0], [0.0, 0.0, -0.5, -0.1]])
    ref = torch.tensor([[0.0, -1.5, -1.0, 0.0], [0.0, 0.0, -0.5, -0.6]])
    scores = torch.tensor([3.0, -2.0])
    rewards, kl = kl_penalised_rewards(scores, logp, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(kl, torch.tensor([[0.0, 0.5, -1.0, 0.0], [0.0, 0.0, 0.0, 0.5]]))
    expected = torch.tensor([[0.0, -0.05, 0.1 + 3.0, 0.0], [0.0, 0.0, 0.0, -0.05 - 2.0]])
    torch.testing.assert_close(rewards, expected)
    with pytest.raises(ValueError, match="no response token"):
        kl_penalised_rewards(scores, logp, ref, torch.zeros_like(mask), 0.1)


def test_adaptive_kl_controller_moves_towards_target():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=100)
    ctl.update(12.0, n_steps=10)  # KL far above the target: error clipped at +0.2
    assert math.isclose(ctl.value, 0.1 * (1 + 0.2 * 10 / 100))
    before = ctl.value
    ctl.update(5.4, n_steps=10)  # below: error -0.1
    assert math.isclose(ctl.value, before * (1 - 0.1 * 10 / 100))
    ctl.update(6.0, n_steps=10)
    assert math.isclose(ctl.value, before * (1 - 0.1 * 10 / 100))
    fixed = FixedKLController(0.3)
    fixed.update(100.0, 100)
    assert fixed.value == 0.3
    restored = AdaptiveKLController(0.5, 6.0, 100)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


def trl_loss(old_logprobs, values, vpreds, logprobs, mask, advantages, returns, cliprange, cliprange_value, vf_coef):
    vpredclipped = torch.max(torch.min(vpreds, values + cliprange_value), values - cliprange_value)
    vf1, vf2 = (vpreds - returns) ** 2, (vpredclipped - returns) ** 2
    vf_loss = 0.5 * trl_masked_mean(torch.max(vf1, vf2), mask)
    ratio = torch.exp(logprobs - old_logprobs)
    pg1, pg2 = -advantages * ratio, -advantages * torch.clamp(ratio, 1.0 - cliprange, 1.0 + cliprange)
    pg_loss = trl_masked_mean(torch.max(pg1, pg2), mask)
    return {
        "loss": pg_loss + vf_coef * vf_loss, "policy_loss": pg_loss, "value_loss": vf_loss,
        "clip_frac": trl_masked_mean(torch.gt(pg2, pg1).float(), mask),
        "value_clip_frac": trl_masked_mean(torch.gt(vf2, vf1).float(), mask),
        "approx_kl": 0.5 * trl_masked_mean((logprobs - old_logprobs) ** 2, mask),
    }  # fmt: skip


def test_ppo_losses_match_trl_and_gradients():
    torch.manual_seed(2)
    shape = (3, 5)
    mask = (torch.rand(shape) > 0.3).long()
    old_lp, adv, old_v, ret = torch.randn(shape), torch.randn(shape), torch.randn(shape), torch.randn(shape)
    lp = (old_lp + 0.4 * torch.randn(shape)).requires_grad_(True)
    v = (old_v + 0.5 * torch.randn(shape)).requires_grad_(True)
    ours = ppo_losses(lp, old_lp, adv, v, old_v, ret, mask, clip_range=0.2, clip_range_value=0.2, vf_coef=0.1)
    lp2, v2 = lp.detach().clone().requires_grad_(True), v.detach().clone().requires_grad_(True)
    theirs = trl_loss(old_lp, old_v, v2, lp2, mask, adv, ret, 0.2, 0.2, 0.1)
    for key in ("loss", "policy_loss", "value_loss", "clip_frac", "value_clip_frac", "approx_kl"):
        torch.testing.assert_close(getattr(ours, key), theirs[key].detach() if key != "loss" else theirs[key])
    ours.loss.backward()
    theirs["loss"].backward()
    torch.testing.assert_close(lp.grad, lp2.grad)
    torch.testing.assert_close(v.grad, v2.grad)
    assert 0 < float(ours.clip_frac) < 1


def test_ppo_clipping_hand_computed():
    mask = torch.ones(1, 2)
    old = torch.zeros(1, 2)
    lp = torch.log(torch.tensor([[1.5, 0.5]])).requires_grad_(True)  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 1.0]])
    zeros = torch.zeros(1, 2)
    out = ppo_losses(lp, old, adv, zeros, zeros, zeros, mask, clip_range=0.2, clip_range_value=0.2, vf_coef=0.0)
    # A > 0: ratio 1.5 is clipped to 1.2 (no gradient); ratio 0.5 is kept (the pessimistic min)
    torch.testing.assert_close(out.policy_loss, torch.tensor(-(1.2 + 0.5) / 2))
    assert float(out.clip_frac) == 0.5
    out.loss.backward()
    assert lp.grad[0, 0] == 0 and lp.grad[0, 1] != 0


def test_policy_with_value_matches_token_logprobs(tokenizer):
    torch.manual_seed(0)
    model = tiny_llama(tokenizer.vocab_size).eval()
    pv = PolicyWithValue(model, value_head_init_std=0.1)
    ids = torch.randint(0, tokenizer.vocab_size, (3, 9))
    attn = torch.ones_like(ids)
    attn[1, 7:] = 0
    resp = torch.zeros_like(ids)
    resp[0, 3:9], resp[1, 4:7], resp[2, 2:5] = 1, 1, 1
    out = pv(ids, attn, resp, temperature=0.7)
    ref = token_logprobs(model, ids, attn, resp, temperature=0.7, with_entropy=True)
    torch.testing.assert_close(out.logprobs, ref.logprobs)
    torch.testing.assert_close(out.entropy, ref.entropy)
    assert (out.values[resp == 0] == 0).all() and (out.values[resp == 1] != 0).all()
    out.values.sum().backward()
    assert pv.value_head.summary.weight.grad is not None
    assert (PolicyWithValue(model).value_head.summary.weight == 0).all()
