"""`llmlab.align.dpo.preference_loss` against trl 1.16's own code (the test oracle): `DPOTrainer._compute_loss`
for sigmoid/hinge/ipo (run on per-token log-probs through a stand-in model), `CPOTrainer.cpo_loss` for the
label-smoothed sigmoid (cDPO) and SimPO, `ORPOTrainer.odds_ratio_loss` for ORPO."""

from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from llmlab.align.dpo import DPO_LOSSES, needs_reference, preference_loss, split_pairs

pytest.importorskip("trl")


def _random_batch(b: int = 6, t: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    """Per-token log-probs (2B, T-1) on random completion masks, chosen rows first (trl's layout)."""
    g = torch.Generator().manual_seed(seed)
    completion = torch.zeros(2 * b, t, dtype=torch.long)
    for i in range(2 * b):
        start = int(torch.randint(1, t // 2, (1,), generator=g))
        end = int(torch.randint(start + 1, t + 1, (1,), generator=g))
        completion[i, start:end] = 1
    per_token = -torch.rand(2 * b, t - 1, generator=g, dtype=torch.float64) * 3  # log-probs in (-3, 0]
    per_token = per_token * completion[:, 1:]  # trl's fused head leaves 0 outside the completion
    ref = -torch.rand(2 * b, generator=g, dtype=torch.float64) * 10
    return {"completion_mask": completion, "per_token": per_token, "ref": ref}


def _trl_dpo_loss(batch: dict[str, torch.Tensor], loss: str, beta: float) -> tuple[float, dict]:
    """trl's `DPOTrainer._compute_loss` itself, on a stand-in model that returns `batch`'s log-probs."""
    from trl.trainer.dpo_trainer import DPOTrainer

    n = batch["completion_mask"].shape[0]
    outputs = SimpleNamespace(
        log_probs=batch["per_token"], entropy=torch.zeros_like(batch["per_token"]),
        mean_logits=torch.zeros_like(batch["per_token"]), is_top1=torch.zeros_like(batch["per_token"]).bool(),
    )  # fmt: skip
    ident = lambda x: x
    fake = SimpleNamespace(
        model=SimpleNamespace(training=True), accelerator=SimpleNamespace(device="cpu", gather=ident,
        gather_for_metrics=ident), aux_loss_enabled=False, ld_alpha=None, precompute_ref_logps=True,
        f_divergence_type="reverse_kl", loss_types=[loss], loss_weights=[1.0], beta=beta, label_smoothing=0.0,
        use_weighting=False, _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
    )  # fmt: skip
    ref_chosen, ref_rejected = split_pairs(batch["ref"])
    inputs = {
        "input_ids": torch.zeros_like(batch["completion_mask"]), "attention_mask": torch.ones_like(batch[
        "completion_mask"]), "completion_mask": batch["completion_mask"], "ref_chosen_logps": ref_chosen,
        "ref_rejected_logps": ref_rejected,
    }  # fmt: skip
    value = DPOTrainer._compute_loss(fake, lambda **kw: outputs, inputs, return_outputs=False)
    assert n == 2 * ref_chosen.shape[0]
    return float(value), {k: v[0] for k, v in fake._metrics["train"].items()}


def _ours(batch: dict[str, torch.Tensor], loss: str, beta: float, **kw: float):  # noqa: ANN202
    sums = batch["per_token"].sum(-1)
    lengths = batch["completion_mask"].sum(-1)
    pc, pr = split_pairs(sums)
    rc, rr = split_pairs(batch["ref"]) if needs_reference(loss) else (None, None)
    lc, lr = split_pairs(lengths)
    return preference_loss(pc, pr, rc, rr, loss=loss, beta=beta, chosen_lengths=lc, rejected_lengths=lr, **kw)


@pytest.mark.parametrize("loss", ["sigmoid", "hinge", "ipo"])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_reference_losses_equal_trl_dpo_trainer(loss: str, beta: float) -> None:
    batch = _random_batch(seed=int(beta * 10))
    expected, metrics = _trl_dpo_loss(batch, loss, beta)
    losses, chosen_r, rejected_r = _ours(batch, loss, beta)
    assert losses.shape == (6,) and losses.dtype == torch.float32
    assert losses.mean().item() == pytest.approx(expected, rel=1e-5, abs=1e-6)
    assert chosen_r.mean().item() == pytest.approx(metrics["rewards/chosen"], rel=1e-5, abs=1e-6)
    assert rejected_r.mean().item() == pytest.approx(metrics["rewards/rejected"], rel=1e-5, abs=1e-6)
    acc = (chosen_r > rejected_r).float().mean().item()
    assert acc == pytest.approx(metrics["rewards/accuracies"])


def _cpo(loss_type: str, beta: float, label_smoothing: float = 0.0, simpo_gamma: float = 0.5) -> SimpleNamespace:
    return SimpleNamespace(alpha=0.0, beta=beta, label_smoothing=label_smoothing, simpo_gamma=simpo_gamma,
                           loss_type=loss_type, accelerator=SimpleNamespace(device="cpu"))  # fmt: skip


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3])
def test_conservative_dpo_equals_trl_label_smoothed_sigmoid(label_smoothing: float) -> None:
    """cDPO: trl's label-smoothed logistic loss (CPOTrainer's sigmoid, fed the log-ratios as its logits)."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    batch, beta = _random_batch(seed=3), 0.2
    pc, pr = split_pairs(batch["per_token"].sum(-1))
    rc, rr = split_pairs(batch["ref"])
    expected, exp_c, exp_r = CPOTrainer.cpo_loss(_cpo("sigmoid", beta, label_smoothing), pc - rc, pr - rr)
    losses, chosen_r, rejected_r = _ours(batch, "sigmoid", beta, label_smoothing=label_smoothing)
    torch.testing.assert_close(losses, expected.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chosen_r, exp_c.float())
    torch.testing.assert_close(rejected_r, exp_r.float())
    if label_smoothing:  # it really changes the loss
        assert not torch.allclose(losses, _ours(batch, "sigmoid", beta)[0])


@pytest.mark.parametrize(("beta", "gamma", "label_smoothing"), [(2.0, 0.5, 0.0), (0.5, 1.4, 0.1)])
def test_simpo_equals_trl_cpo_trainer(beta: float, gamma: float, label_smoothing: float) -> None:
    """SimPO: CPOTrainer's simpo on length-averaged log-probs (its `average_log_prob=True` for simpo)."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    batch = _random_batch(seed=4)
    avg = batch["per_token"].sum(-1) / batch["completion_mask"].sum(-1)
    expected, exp_c, exp_r = CPOTrainer.cpo_loss(_cpo("simpo", beta, label_smoothing, gamma), *split_pairs(avg))
    losses, chosen_r, rejected_r = _ours(batch, "simpo", beta, label_smoothing=label_smoothing, simpo_gamma=gamma)
    torch.testing.assert_close(losses, expected.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chosen_r, exp_c.float())
    torch.testing.assert_close(rejected_r, exp_r.float())


@pytest.mark.parametrize("beta", [0.1, 1.0])
def test_orpo_equals_trl_odds_ratio_loss(beta: float) -> None:
    """ORPO: trl's loss is ``nll - mean(beta * logsigmoid(log_odds))``; ours returns the second term's losses."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    batch = _random_batch(seed=5)
    avg = batch["per_token"].sum(-1) / batch["completion_mask"].sum(-1)
    fake = SimpleNamespace(beta=beta, accelerator=SimpleNamespace(device="cpu"))
    trl_terms, exp_c, exp_r, _, _ = ORPOTrainer.odds_ratio_loss(fake, *split_pairs(avg))
    losses, chosen_r, rejected_r = _ours(batch, "orpo", beta)
    torch.testing.assert_close(losses, -trl_terms.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(chosen_r, exp_c.float())
    torch.testing.assert_close(rejected_r, exp_r.float())


def test_gradients_flow_and_rewards_are_detached() -> None:
    pc = torch.tensor([-3.0, -5.0], requires_grad=True)
    pr = torch.tensor([-4.0, -2.0], requires_grad=True)
    losses, chosen_r, rejected_r = preference_loss(pc, pr, torch.tensor([-3.5, -4.0]), torch.tensor([-3.0, -3.0]),
                                                   loss="sigmoid", beta=0.1)  # fmt: skip
    assert not chosen_r.requires_grad and not rejected_r.requires_grad
    losses.sum().backward()
    # d/dpc of -logsigmoid(beta * delta) = -beta * sigmoid(-beta * delta) < 0: raising the chosen lowers the loss
    assert bool((pc.grad < 0).all()) and bool((pr.grad > 0).all())


def test_errors_name_the_missing_input() -> None:
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="unknown DPO loss 'kto'"):
        preference_loss(x, x, x, x, loss="kto", beta=0.1)
    with pytest.raises(ValueError, match="chosen_lengths"):
        preference_loss(x, x, x, x, loss="ipo", beta=0.1)
    with pytest.raises(ValueError, match="ref_chosen_logps"):
        preference_loss(x, x, None, None, loss="sigmoid", beta=0.1)


def test_loss_names_match_the_config() -> None:
    from llmlab.recipes.align_config import DPO_LOSSES as CONFIG_LOSSES

    assert CONFIG_LOSSES == DPO_LOSSES
