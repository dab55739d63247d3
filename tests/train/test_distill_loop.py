"""`DistillTrainer` on a tiny teacher/student: the KD loss falls, the hidden/attention terms run (with a projection
when widths differ), the cached top-k path reads the right batches, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_llama

from llmlab.compress.distill import TopKCache, kd_loss, top_k_logits
from llmlab.data.loader import RandomWindowLoader
from llmlab.train.checkpoint import load_trainer_state
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.distill_loop import PROJECTION_FILE, DistillTrainer, KDSettings
from llmlab.train.logging import read_metrics

VOCAB, BLOCK = 48, 16


class Stream:
    """Stands in for a TokenDataset: a learnable token stream."""

    def __init__(self, n: int = 3000) -> None:
        rng = np.random.default_rng(0)
        self.tokens = (np.cumsum(rng.choice([1, 1, 2], size=n)) % VOCAB).astype(np.uint16)
        self.split = "train"

    def __len__(self) -> int:
        return len(self.tokens)


def _teacher() -> torch.nn.Module:
    """Wider (48), deeper (3 layers), more heads (6) than the student; large embeddings make it peaky and mostly a
    function of the current token, which a 20-step student can learn."""
    teacher = tiny_llama(seed=1, vocab_size=VOCAB, hidden_size=48, num_attention_heads=6, num_key_value_heads=2,
                         num_hidden_layers=3)  # fmt: skip
    torch.manual_seed(1)
    with torch.no_grad():
        teacher.embed_tokens.weight.normal_(0.0, 1.0)
    return teacher.eval()


def _train(out: Path, kd: KDSettings, max_iters: int, *, cache: TopKCache | None = None, teacher=True,
           resume: bool = False, student: torch.nn.Module | None = None) -> DistillTrainer:  # fmt: skip
    tc = TrainConfig(batch_size=4, max_iters=max_iters, log_interval=1, save_interval=2, eval_interval=0,
                     device="cpu", precision="fp32", tensorboard=False, progress=False)  # fmt: skip
    student = student if student is not None else tiny_llama(seed=0, vocab_size=VOCAB)
    state = load_trainer_state(out / "checkpoints" / "last") if resume else None
    trainer = DistillTrainer(
        student, _teacher() if teacher else None, kd, tc, OptimConfig(lr=3e-3, weight_decay=0.0),
        ScheduleConfig(warmup_iters=0, min_lr=3e-3), RandomWindowLoader(Stream(), 4, BLOCK, seed=7), None, out,
        cache=cache, resume_state=state, say=lambda _m: None,
    )  # fmt: skip
    trainer.fit()
    return trainer


def test_the_students_kd_loss_falls(tmp_path: Path) -> None:
    x, y = RandomWindowLoader(Stream(), 8, BLOCK, seed=99).next_batch()  # a fixed batch the run never draws
    student, teacher = tiny_llama(seed=0, vocab_size=VOCAB), _teacher()

    def held_out_kd() -> float:
        with torch.no_grad():
            return kd_loss(student.eval()(x).logits, teacher(x).logits, y, temperature=1.0, alpha=1.0).loss.item()

    before = held_out_kd()
    _train(tmp_path / "run", KDSettings(temperature=1.0, alpha=1.0), 20, student=student)
    assert held_out_kd() < 0.7 * before
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert {"loss_kd", "loss_ce"} <= set(rows[-1]) and rows[-1]["loss"] == pytest.approx(rows[-1]["loss_kd"])
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.safetensors").is_file()


def test_hidden_and_attention_terms_with_a_projection(tmp_path: Path) -> None:
    kd = KDSettings(alpha=0.5, hidden_weight=1.0, attention_weight=1.0, hidden_layers=None)
    trainer = _train(tmp_path / "run", kd, 4)
    assert trainer.hidden_pairs == [(0, 0), (1, 2)] and trainer.attention_pairs == [(1, 2)]
    proj = trainer.raw_model.hidden_loss.proj
    assert proj.weight.shape == (48, 32)  # student width 32 -> teacher width 48
    assert any(proj.weight is p for g in trainer.optimizer.param_groups for p in g["params"])
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert rows[-1]["loss_hidden"] > 0 and rows[-1]["loss_attention"] > 0
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "last" / PROJECTION_FILE))
    torch.testing.assert_close(saved["proj.weight"], proj.weight.detach())


def test_cached_topk_reads_the_batches_it_was_made_for_and_alpha_zero_needs_no_teacher(tmp_path: Path) -> None:
    teacher, loader = _teacher(), RandomWindowLoader(Stream(), 4, BLOCK, seed=7)
    batches = []
    for _ in range(6):
        x, _y = loader.next_batch()
        with torch.no_grad():
            batches.append((x, *top_k_logits(teacher(x).logits, VOCAB)))
    cache = TopKCache.write(tmp_path / "cache", iter(batches), k=VOCAB, vocab_size=VOCAB, shard_batches=4)
    kd = KDSettings(temperature=2.0, alpha=0.7)
    cached = _train(tmp_path / "cached", kd, 3, cache=cache, teacher=False)
    _train(tmp_path / "fly", kd, 3)
    a, b = (read_metrics(p / "metrics.jsonl") for p in (tmp_path / "cached", tmp_path / "fly"))
    for r1, r2 in zip(a, b, strict=True):  # k = vocab: the same loss up to the fp16 rounding of the cache
        assert r1["loss"] == pytest.approx(r2["loss"], rel=2e-3)
    assert cached.batches_drawn == 3
    with pytest.raises(ValueError, match="holds 6 batches"):
        _train(tmp_path / "long", kd, 7, cache=cache, teacher=False)
    _train(tmp_path / "plain", KDSettings(alpha=0.0), 2, teacher=False)  # the no-KD baseline
    assert read_metrics(tmp_path / "plain" / "metrics.jsonl")[-1]["loss_kd"] == 0.0


def test_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    kd = KDSettings(alpha=0.5, hidden_weight=0.5)
    full = _train(tmp_path / "full", kd, 4)
    _train(tmp_path / "part", kd, 2)
    from llmlab.models import load_model

    student = load_model(tmp_path / "part" / "checkpoints" / "last")
    part = _train(tmp_path / "part", kd, 4, resume=True, student=student, cache=None)
    a = read_metrics(tmp_path / "full" / "metrics.jsonl")
    b = read_metrics(tmp_path / "part" / "metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)
    for (n, p), (_m, q) in zip(full.student.named_parameters(), part.student.named_parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=n)
