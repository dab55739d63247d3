"""The distillation losses of `llmlab.compress.distill` against hand/torch references: Hinton KD (T^2, alpha,
ignore index), the top-k cached form (equal to the full loss at k = vocab), hidden-state projection, attention
transfer shapes, layer pairing, vocabulary check and the top-k cache round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tiny_models import tiny_llama

from llmlab.compress.distill import (
    HiddenStateLoss,
    TopKCache,
    attention_transfer_loss,
    capture_layer_outputs,
    check_kd_settings,
    check_vocab_compatible,
    kd_loss,
    layer_pairs,
    top_k_logits,
    topk_kd_loss,
)

B, T, V = 2, 5, 11


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    student = torch.randn(B, T, V, generator=g) * 2
    teacher = torch.randn(B, T, V, generator=g) * 3
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[0, :2] = -100
    targets[1, 4] = -100
    return student, teacher, targets


def _reference(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temp: float, alpha: float):
    """Position by position with torch's kl_div (batchmean over the kept positions) and cross_entropy."""
    keep = targets.reshape(-1) != -100
    s, t = student.reshape(-1, V)[keep], teacher.reshape(-1, V)[keep]
    kd = F.kl_div(F.log_softmax(s / temp, -1), F.log_softmax(t / temp, -1), reduction="batchmean", log_target=True)
    kd = kd * temp**2
    ce = F.cross_entropy(s, targets.reshape(-1)[keep])
    return alpha * kd + (1 - alpha) * ce, kd, ce


@pytest.mark.parametrize(("temp", "alpha"), [(1.0, 0.5), (2.0, 0.3), (4.0, 1.0), (0.7, 0.0)])
def test_kd_loss_matches_the_torch_reference(temp: float, alpha: float) -> None:
    student, teacher, targets = _inputs()
    got = kd_loss(student, teacher, targets, temperature=temp, alpha=alpha)
    want, kd, ce = _reference(student, teacher, targets, temp, alpha)
    torch.testing.assert_close(got.loss, want)
    torch.testing.assert_close(got.kd, kd)
    torch.testing.assert_close(got.ce, ce)


def test_kd_term_is_zero_for_identical_logits_and_ignored_positions_do_not_count() -> None:
    student, teacher, targets = _inputs()
    assert float(kd_loss(student, student, targets, temperature=3.0, alpha=1.0).loss) == pytest.approx(0, abs=1e-6)
    changed = teacher.clone()
    changed[0, :2] += 100 * torch.randn(2, V)  # only ignored positions change
    a = kd_loss(student, teacher, targets, temperature=2.0, alpha=0.5).loss
    b = kd_loss(student, changed, targets, temperature=2.0, alpha=0.5).loss
    torch.testing.assert_close(a, b)


def test_kd_gradient_flows_to_the_student_only() -> None:
    student, teacher, targets = _inputs()
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    kd_loss(student, teacher, targets, temperature=2.0, alpha=0.5).loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_topk_loss_equals_the_full_loss_at_k_equal_vocab_and_differs_below() -> None:
    student, teacher, targets = _inputs(1)
    values, indices = top_k_logits(teacher, V)
    assert values.dtype == torch.float16 and indices.dtype == torch.int32 and values.shape == (B, T, V)
    teacher16 = values.float().gather(-1, indices.long().argsort(-1))  # the fp16-rounded full logits
    full = kd_loss(student, teacher16, targets, temperature=2.0, alpha=0.4)
    cached = topk_kd_loss(student, values, indices, targets, temperature=2.0, alpha=0.4)
    torch.testing.assert_close(cached.loss, full.loss)
    v4, i4 = top_k_logits(teacher, 4)
    partial = topk_kd_loss(student, v4, i4, targets, temperature=2.0, alpha=1.0)
    assert partial.loss.item() > 0 and abs(partial.loss.item() - full.kd.item()) > 1e-4
    with pytest.raises(ValueError, match="do not match"):
        topk_kd_loss(student, v4[:, :3], i4[:, :3], targets)


def test_hidden_state_loss_projects_when_widths_differ() -> None:
    torch.manual_seed(0)
    same = HiddenStateLoss(8, 8)
    assert not list(same.parameters())
    h = torch.randn(B, T, 8)
    assert same([h], [h]).item() == 0.0
    proj = HiddenStateLoss(8, 12)
    assert isinstance(proj.proj, torch.nn.Linear) and proj.proj.weight.shape == (12, 8)
    h_t = torch.randn(B, T, 12)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[0, 0] = False
    loss = proj([h, h], [h_t, h_t], mask)
    want = ((proj.proj(h) - h_t).pow(2).mean(-1)[mask]).mean()
    torch.testing.assert_close(loss, want)
    loss.backward()
    assert proj.proj.weight.grad is not None
    with pytest.raises(ValueError, match="equal, non-empty"):
        proj([h], [])


def test_attention_transfer_matches_heads_or_averages_them() -> None:
    g = torch.Generator().manual_seed(0)
    a4 = torch.rand(B, 4, T, T, generator=g).softmax(-1)
    b4 = torch.rand(B, 4, T, T, generator=g).softmax(-1)
    b6 = torch.rand(B, 6, T, T, generator=g).softmax(-1)
    torch.testing.assert_close(attention_transfer_loss([a4], [b4]), (a4 - b4).pow(2).mean())
    averaged = (a4.mean(1) - b6.mean(1)).pow(2).mean()
    torch.testing.assert_close(attention_transfer_loss([a4], [b6]), averaged)
    assert attention_transfer_loss([a4], [a4]).item() == 0.0
    with pytest.raises(ValueError, match="different positions"):
        attention_transfer_loss([a4], [b4[:, :, :3, :3]])


def test_layer_pairs_uniform_mapping_and_checks() -> None:
    assert layer_pairs(2, 30) == [(0, 14), (1, 29)]
    assert layer_pairs(4, 4) == [(0, 0), (1, 1), (2, 2), (3, 3)]
    assert layer_pairs(6, 30, [-1]) == [(5, 29)]
    check_vocab_compatible(49152, 49152)
    with pytest.raises(ValueError, match="student vocab_size 256 differs from the teacher's 49152"):
        check_vocab_compatible(256, 49152)
    with pytest.raises(ValueError, match="kd.temperature"):
        check_kd_settings(0.0, 0.5)
    with pytest.raises(ValueError, match="kd.alpha"):
        check_kd_settings(2.0, 1.5)


def test_capture_layer_outputs_records_the_chosen_layers_and_removes_its_hooks() -> None:
    model = tiny_llama(vocab_size=32)
    x = torch.randint(0, 32, (2, 6))
    with capture_layer_outputs(model, [0, 1]) as hidden:
        model(x)
    assert set(hidden) == {0, 1} and hidden[1].shape == (2, 6, 32)
    assert not any(layer._forward_hooks for layer in model.layers)


def test_topk_cache_round_trip_and_mismatch(tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(5):
        x = torch.randint(0, V, (B, T), generator=g)
        values, indices = top_k_logits(torch.randn(B, T, V, generator=g), 3)
        batches.append((x, values, indices))
    cache = TopKCache.write(tmp_path / "cache", iter(batches), k=3, vocab_size=V, shard_batches=2)
    assert cache.n_batches == 5 and len(list((tmp_path / "cache").glob("shard_*.safetensors"))) == 3
    reopened = TopKCache(tmp_path / "cache")
    for i, (x, values, indices) in enumerate(batches):
        got_v, got_i = reopened.get(i, x)
        assert torch.equal(got_v, values) and torch.equal(got_i, indices)
    with pytest.raises(ValueError, match="made for other batches"):
        reopened.get(0, batches[1][0])
    with pytest.raises(ValueError, match="holds 5 batches"):
        reopened.get(5)
    with pytest.raises(FileNotFoundError, match="not a complete teacher cache"):
        TopKCache(tmp_path / "missing")
