"""EMA of the weights during training (`train.ema_decay`): the update rule, exact resume with the EMA, and the
``checkpoints/<name>/ema/`` folder as a model every verb loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from llmlab.cli.main import main
from llmlab.hub import load_for_inference
from llmlab.train.checkpoint import load_trainer_state
from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
from llmlab.train.ema import EMA, ema_decay_at
from llmlab.train.logging import read_metrics
from llmlab.train.trainer import Trainer

TINY = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "tiny.yaml"


def test_update_follows_the_warmed_up_decay() -> None:
    p = nn.Parameter(torch.tensor([1.0, -2.0]))
    ema = EMA([("w", p)], decay=0.9)
    expected = p.detach().clone().double()
    for t in range(30):
        with torch.no_grad():
            p.add_(torch.tensor([0.5, 0.25]) * (t % 3 - 1))
        ema.update()
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * p.detach().double()
    assert ema_decay_at(0.9, 0) == pytest.approx(0.1) and ema_decay_at(0.9, 100) == 0.9
    assert torch.allclose(ema.shadow["w"].double(), expected, atol=1e-6)
    assert ema.shadow["w"].dtype == torch.float32 and ema.updates == 30
    before = p.detach().clone()
    with ema.applied():
        assert torch.equal(p.detach(), ema.shadow["w"])
    assert torch.equal(p.detach(), before)  # restored exactly


def test_load_state_dict_refuses_other_parameters() -> None:
    ema = EMA([("w", nn.Parameter(torch.zeros(2)))], decay=0.5)
    with pytest.raises(ValueError, match="EMA weights do not match.*e.g. v"):
        ema.load_state_dict({"updates": 1, "shadow": {"v": torch.zeros(2)}})
    with pytest.raises(ValueError, match=r"EMA weight w has shape \(3,\)"):
        ema.load_state_dict({"updates": 1, "shadow": {"w": torch.zeros(3)}})


class Toy(Trainer):
    """Regression with dropout: the EMA is written in the checkpoint's own format (`w.safetensors`)."""

    def __init__(self, model: nn.Module, *args: Any, **kwargs: Any) -> None:
        self.drawn = 0
        super().__init__(model, *args, **kwargs)

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.drawn)
        self.drawn += 1
        x = torch.randn(8, 4, generator=g)
        return x, x @ torch.tensor([[1.0, -2.0, 0.5, 3.0]]).T

    def batch_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return nn.functional.mse_loss(self.model(batch[0]), batch[1])

    def save_weights(self, directory: Path) -> None:
        save_file({k: v.contiguous() for k, v in self.raw_model.state_dict().items()}, str(directory / "w.safetensors"))

    def data_state(self) -> dict[str, Any]:
        return {"drawn": self.drawn}

    def load_data_state(self, state: dict[str, Any]) -> None:
        self.drawn = state["drawn"]


def _train_toy(out: Path, max_iters: int, resume: bool = False) -> None:
    tc = TrainConfig(max_iters=max_iters, log_interval=1, save_interval=4, eval_interval=0, device="cpu",
                     precision="fp32", tensorboard=False, progress=False, ema_decay=0.8)  # fmt: skip
    torch.manual_seed(0)
    model, state = nn.Sequential(nn.Dropout(0.2), nn.Linear(4, 1)), None
    if resume:
        model.load_state_dict(load_file(str(out / "checkpoints" / "last" / "w.safetensors")))
        state = load_trainer_state(out / "checkpoints" / "last")
    schedule = ScheduleConfig(warmup_iters=0, min_lr=1e-3, decay_iters=20)
    Toy(model, tc, OptimConfig(lr=0.05, weight_decay=0.0), schedule, out, resume_state=state, say=lambda _m: None).fit()


def test_resume_with_ema_is_bit_exact(tmp_path: Path) -> None:
    _train_toy(tmp_path / "full", 20)
    _train_toy(tmp_path / "part", 8)
    _train_toy(tmp_path / "part", 20, resume=True)
    states = [load_trainer_state(tmp_path / d / "checkpoints" / "last") for d in ("full", "part")]
    assert states[0]["ema"]["updates"] == states[1]["ema"]["updates"] == 20
    for name, shadow in states[0]["ema"]["shadow"].items():
        assert torch.equal(shadow, states[1]["ema"]["shadow"][name]), name
    ema_a, ema_b = (load_file(str(tmp_path / d / "checkpoints/last/ema/w.safetensors")) for d in ("full", "part"))
    raw = load_file(str(tmp_path / "full" / "checkpoints/last/w.safetensors"))
    assert all(torch.equal(ema_a[k], ema_b[k]) for k in ema_a)
    assert torch.equal(ema_a["1.weight"], states[0]["ema"]["shadow"]["1.weight"])  # the ema/ folder = the shadow
    assert not torch.equal(ema_a["1.weight"], raw["1.weight"])  # an average, not the last weights


def _corpus(path: Path, vocab: int = 20) -> Path:
    """A prepared-corpus folder (train.bin/val.bin uint16 + meta.json), mostly 'next token = token + 1'."""
    tokens = (np.cumsum(np.random.default_rng(0).choice([1, 1, 2], size=3000)) % vocab).astype(np.uint16)
    path.mkdir(parents=True)
    tokens[:2500].tofile(path / "train.bin")
    tokens[2500:].tofile(path / "val.bin")
    meta = {"dtype": "uint16", "vocab_size": vocab, "tokenizer": "tokenizer.json", "train_tokens": 2500}
    (path / "meta.json").write_text(json.dumps({**meta, "val_tokens": 500}))
    return path


def _pretrain(*args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", "--config", str(TINY), *args])
    return exc.value.code or 0


def test_pretrain_writes_a_loadable_ema_model_and_resumes_exactly(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    common = [f"data.dir={corpus}", "train.ema_decay=0.9", "train.save_interval=0", "schedule.decay_iters=8"]
    assert _pretrain(*common, f"out_dir={tmp_path / 'full'}", "train.max_iters=8") == 0
    assert _pretrain(*common, f"out_dir={tmp_path / 'part'}", "train.max_iters=4") == 0
    assert _pretrain(*common, f"out_dir={tmp_path / 'part'}", "train.max_iters=8", "--resume") == 0
    last = tmp_path / "full" / "checkpoints" / "last"
    assert sorted(p.name for p in (last / "ema").iterdir()) == ["model.safetensors", "model_config.json"]
    assert "ema/model.safetensors" in json.loads((last / "checkpoint.json").read_text())["files"]
    shadow = load_trainer_state(last)["ema"]["shadow"]
    model = load_for_inference(last / "ema", "cpu", require_tokenizer=False).model
    params = dict(model.named_parameters())
    assert set(params) == set(shadow)
    assert all(torch.equal(params[n].detach(), shadow[n]) for n in shadow)
    a, b = (load_file(str(tmp_path / d / "checkpoints/last/ema/model.safetensors")) for d in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # resumed EMA = uninterrupted EMA
    summary = json.loads((tmp_path / "full" / "summary.json").read_text())
    assert summary["ema_checkpoint"] == str(last / "ema")


def test_bad_ema_decay_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _pretrain(f"out_dir={tmp_path / 'run'}", "train.ema_decay=1.0") == 2
    err = capsys.readouterr().err.strip()
    assert "train.ema_decay must be in [0, 1)" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _torchrun(*args: str) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmlab",
           "pretrain", "--config", str(TINY), *args]  # fmt: skip
    proc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_ema_under_ddp_and_fsdp2_matches_one_process(tmp_path: Path) -> None:
    """2 CPU ranks x batch 2 = one process x batch 4; FSDP2 is interrupted at step 3 and resumed."""
    common = [f"data.dir={_corpus(tmp_path / 'corpus')}", "train.ema_decay=0.8", "train.save_interval=0",
              "schedule.decay_iters=5", "model.dropout=0.0", "train.eval_interval=5"]  # fmt: skip
    assert _pretrain(*common, f"out_dir={tmp_path / 'single'}", "train.batch_size=4", "train.max_iters=5") == 0
    ddp = [*common, f"out_dir={tmp_path / 'ddp'}", "train.batch_size=2", "train.distributed=ddp"]
    _torchrun(*ddp, "train.max_iters=5")
    fsdp = [*common, f"out_dir={tmp_path / 'fsdp'}", "train.batch_size=2", "train.distributed=fsdp"]
    _torchrun(*fsdp, "train.max_iters=3")
    _torchrun(*fsdp, "train.max_iters=5", "--resume")
    ref = load_file(str(tmp_path / "single" / "checkpoints/last/ema/model.safetensors"))
    for run in ("ddp", "fsdp"):
        got = load_file(str(tmp_path / run / "checkpoints/last/ema/model.safetensors"))
        assert got.keys() == ref.keys()
        for k in ref:
            torch.testing.assert_close(got[k], ref[k], rtol=1e-4, atol=1e-5, msg=f"{run}: {k}")


def test_data_seed_changes_the_data_order_only(tmp_path: Path) -> None:
    """``train.data_seed`` seeds the batches (default: ``train.seed``); ``train.seed`` still seeds the init."""
    corpus = _corpus(tmp_path / "corpus")

    def run(name: str, *extra: str) -> list[float]:
        assert _pretrain(f"data.dir={corpus}", f"out_dir={tmp_path / name}", "train.max_iters=3", *extra) == 0
        state = load_trainer_state(tmp_path / name / "checkpoints" / "last")
        assert state["data"]["seed"] == (int(extra[-1].split("=")[1]) if extra else 1337)
        return [r["loss"] for r in read_metrics(tmp_path / name / "metrics.jsonl")]

    default, same = run("default"), run("same", "train.data_seed=1337")
    assert default == same  # data_seed = seed by default
    other = run("other", "train.data_seed=7")
    assert other != default
