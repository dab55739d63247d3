"""The extension point of `llmlab.train.trainer.Trainer`: a new objective is a subclass that says how a batch is
drawn, what its loss is and what a checkpoint holds — here a toy regression objective in a few dozen lines
(as DPO/PPO will be). The base loop trains it (the loss falls) and resumes it bit-exactly, dropout included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from llmlab.train.checkpoint import load_trainer_state
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.logging import read_metrics
from llmlab.train.trainer import Trainer

W_TRUE = torch.tensor([[1.0, -2.0, 0.5, 3.0]])


class ToyStream:
    """Random regression batches from its own generator; its state is the number of batches drawn."""

    def __init__(self, seed: int, batch_size: int) -> None:
        self.seed, self.batch_size, self.drawn = seed, batch_size, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.drawn)
        self.drawn += 1
        x = torch.randn(self.batch_size, 4, generator=g)
        return x, x @ W_TRUE.T


class RegressionTrainer(Trainer):
    """A third objective: mean squared error, checkpoints hold the weights as safetensors."""

    def __init__(self, model: nn.Module, stream: ToyStream, *args: Any, **kwargs: Any) -> None:
        self.stream = stream
        super().__init__(model, *args, **kwargs)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.stream.next_batch()

    def batch_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.model(x), y)

    def save_weights(self, directory: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.raw_model.state_dict().items()}, str(directory / "w.safetensors"))

    def data_state(self) -> dict[str, Any]:
        return {"drawn": self.stream.drawn}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.stream.drawn = state["drawn"]


def toy_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 1))


def train(out: Path, max_iters: int, resume: bool = False) -> dict[str, Any]:
    tc = TrainConfig(batch_size=8, grad_accum=2, max_iters=max_iters, log_interval=1, save_interval=3,
                     eval_interval=0, device="cpu", precision="fp32", tensorboard=False, progress=False)  # fmt: skip
    model, state = toy_model(), None
    if resume:
        model.load_state_dict(load_file(str(out / "checkpoints" / "last" / "w.safetensors")))
        state = load_trainer_state(out / "checkpoints" / "last")
    trainer = RegressionTrainer(
        model, ToyStream(seed=1, batch_size=tc.batch_size), tc, OptimConfig(lr=0.1, weight_decay=0.0),
        ScheduleConfig(warmup_iters=2, min_lr=1e-3, decay_iters=40), out, resume_state=state, say=lambda _m: None,
    )  # fmt: skip
    return trainer.fit()


def test_a_toy_objective_trains_and_resumes_exactly(tmp_path: Path) -> None:
    summary = train(tmp_path / "full", 40)
    rows = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [r["iter"] for r in rows] == list(range(1, 41))
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"], (rows[0]["loss"], rows[-1]["loss"])
    assert summary["iters"] == 40 and summary["final_train_loss"] == rows[-1]["loss"]

    train(tmp_path / "part", 9)  # checkpoint at 9 (save_interval 3 and the end) ...
    train(tmp_path / "part", 40, resume=True)  # ... continued to 40
    keys = ("iter", "loss", "lr", "grad_norm")
    got = [{k: r[k] for k in keys} for r in read_metrics(tmp_path / "part" / "metrics.jsonl")]
    assert got == [{k: r[k] for k in keys} for r in rows]  # bit-identical, dropout and data position included
    a, b = (load_file(str(tmp_path / d / "checkpoints" / "last" / "w.safetensors")) for d in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
