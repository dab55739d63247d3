"""GRPO's formulas (`llmlab.align.grpo`) against trl 1.16's GRPOTrainer (a test oracle only)."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from llmlab.align.grpo import group_advantages, grpo_loss


def test_group_advantages_by_hand():
    rewards = torch.tensor([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0])
    adv = group_advantages(rewards, 4)
    std = torch.tensor([1.0, 0.0, 1.0, 0.0]).std()  # unbiased
    torch.testing.assert_close(adv[:4], torch.tensor([0.5, -0.5, 0.5, -0.5]) / (std + 1e-4))
    assert adv[4:].abs().max() == 0
    torch.testing.assert_close(group_advantages(rewards, 2, scale=False), torch.tensor([0.5, -0.5] * 2 + [0.0] * 4))
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(rewards, 3)


class _Accel:
    def reduce(self, t, reduction="sum"):
        return t

    def gather(self, t):
        return t

    gather_for_metrics = gather


def trl_loss(logps, old, ref, adv, mask, *, beta, epsilon, loss_type, max_len):
    """trl's `GRPOTrainer._compute_loss` run on a stub trainer whose model returns `logps`."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    stub = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *a, **k: (logps, torch.zeros_like(logps), None),
        aux_loss_enabled=False, top_entropy_quantile=1.0, off_policy_mask_threshold=None,
        importance_sampling_level="token", beta=beta, loss_type=loss_type, epsilon_low=epsilon,
        epsilon_high=epsilon, use_vllm=False, model=SimpleNamespace(training=True),
        current_gradient_accumulation_steps=1, max_completion_length=max_len, _entropy_bonus_enabled=False,
        _metrics={"train": defaultdict(list)}, accelerator=_Accel(),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None),
    )  # fmt: skip
    b, t = logps.shape
    inputs = {
        "prompt_ids": torch.zeros(b, 0, dtype=torch.long), "prompt_mask": torch.zeros(b, 0, dtype=torch.long),
        "completion_ids": torch.zeros(b, t, dtype=torch.long), "completion_mask": mask,
        "advantages": adv, "old_per_token_logps": old, "ref_per_token_logps": ref,
    }  # fmt: skip
    loss = GRPOTrainer._compute_loss(stub, None, inputs)
    return loss, stub._metrics["train"]


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("off_policy", [False, True])
def test_loss_and_gradient_equal_trl(loss_type, beta, off_policy):
    pytest.importorskip("trl")
    g = torch.Generator().manual_seed(0)
    b, t, max_len = 6, 7, 9
    base = -torch.rand(b, t, generator=g) * 3
    mask = (torch.arange(t)[None] < torch.tensor([7, 5, 3, 6, 1, 4])[:, None]).long()
    old = (base + torch.randn(b, t, generator=g) * 0.3) if off_policy else None  # ratios beyond the clip
    ref = base + torch.randn(b, t, generator=g) * 0.5
    adv = group_advantages(torch.randn(b, generator=g), 3)
    ours_in = base.clone().requires_grad_(True)
    ours = grpo_loss(ours_in, adv, mask, old_logprobs=old, ref_logprobs=ref, beta=beta, epsilon=0.2,
                     loss_type=loss_type, max_completion_length=max_len)  # fmt: skip
    ours.loss.backward()
    theirs_in = base.clone().requires_grad_(True)
    theirs, metrics = trl_loss(theirs_in, old, ref, adv, mask, beta=beta, epsilon=0.2, loss_type=loss_type,
                               max_len=max_len)  # fmt: skip
    theirs.backward()
    torch.testing.assert_close(ours.loss, theirs.detach())
    torch.testing.assert_close(ours_in.grad, theirs_in.grad)
    assert float(ours.clip_frac) == pytest.approx(metrics["clip_ratio/region_mean"][0])
    if beta:
        assert float(ours.kl) == pytest.approx(metrics["kl"][0])
    assert (float(ours.clip_frac) > 0) == off_policy


def test_errors():
    lp, m, a = torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2)
    with pytest.raises(ValueError, match="ref_logprobs"):
        grpo_loss(lp, a, m, beta=0.1)
    with pytest.raises(ValueError, match="max_completion_length"):
        grpo_loss(lp, a, m, loss_type="dr_grpo")
    with pytest.raises(ValueError, match="unknown GRPO loss type"):
        grpo_loss(lp, a, m, loss_type="ppo")
