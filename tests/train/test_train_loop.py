"""The training step: gradient accumulation equivalence, bf16 autocast on CPU, NaN guard."""

from pathlib import Path

import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.train.config import PretrainConfig
from llmlab.train.pretrain_loop import PretrainTrainer

V, T = 17, 8


class StreamLoader:
    """Hands out consecutive rows of a fixed tensor, so 4 batches of 2 == 1 batch of 8."""

    def __init__(self, rows: torch.Tensor, batch_size: int) -> None:
        self.rows, self.batch_size, self.pos = rows, batch_size, 0

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        chunk = self.rows[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return chunk[:, :-1], chunk[:, 1:]

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = state["pos"]


def make_rows(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, V, (n, 1), generator=g)
    return (start + torch.arange(T + 1)) % V  # (n, T+1): next token = token + 1, learnable


def make_trainer(tmp: Path, batch_size: int, grad_accum: int, optim: str = "adamw", **train) -> PretrainTrainer:
    cfg = PretrainConfig()
    cfg.model = GPTConfig(vocab_size=V, block_size=T, n_layer=2, n_head=2, n_embd=16, dropout=0.0)
    cfg.train.batch_size, cfg.train.grad_accum = batch_size, grad_accum
    cfg.train.device, cfg.train.precision, cfg.train.max_iters = "cpu", "fp32", 100
    for k, v in train.items():
        setattr(cfg.train, k, v)
    cfg.optim.name, cfg.optim.lr, cfg.optim.grad_clip, cfg.optim.weight_decay = optim, 1e-2, 0.0, 0.1
    cfg.schedule.warmup_iters = 0
    torch.manual_seed(0)
    model = GPT(cfg.model)
    loader = StreamLoader(make_rows(400), batch_size)
    return PretrainTrainer(model, cfg, loader, None, tmp, device="cpu")


def test_grad_accumulation_gives_the_same_gradients(tmp_path: Path) -> None:
    big, small = make_trainer(tmp_path / "a", 8, 1, optim="sgd"), make_trainer(tmp_path / "b", 2, 4, optim="sgd")
    for tr in (big, small):
        for g in tr.optimizer.param_groups:
            g["weight_decay"] = 0.0
        tr.oc.lr = 1.0
    before = {n: p.detach().clone() for n, p in big.raw_model.named_parameters()}
    # SGD with lr = 1 and no decay: params move by exactly -grad (schedule lr at iter 0 = optim.lr, no warmup)
    big.schedule.lr = small.schedule.lr = 1.0
    loss_big, norm_big, tok_big = big.train_step()
    loss_small, norm_small, tok_small = small.train_step()
    assert tok_big == tok_small == 8 * T
    torch.testing.assert_close(loss_small, loss_big, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(norm_small, norm_big, rtol=1e-5, atol=1e-6)
    small_params = dict(small.raw_model.named_parameters())
    for name, p in big.raw_model.named_parameters():
        grad_big = before[name] - p.detach()
        grad_small = before[name] - small_params[name].detach()
        assert grad_big.abs().sum() > 0, name
        torch.testing.assert_close(grad_small, grad_big, rtol=1e-5, atol=1e-7, msg=name)


def test_grad_accumulation_gives_the_same_loss_curve(tmp_path: Path) -> None:
    big, small = make_trainer(tmp_path / "a", 8, 1), make_trainer(tmp_path / "b", 2, 4)
    curve_big = torch.stack([big.train_step()[0] for _ in range(4)])
    curve_small = torch.stack([small.train_step()[0] for _ in range(4)])
    torch.testing.assert_close(curve_small, curve_big, rtol=1e-5, atol=1e-6)
    assert curve_big[-1] < curve_big[0]


def test_bf16_autocast_on_cpu_runs_and_learns(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, 8, 1, precision="bf16")
    assert trainer.precision.dtype == torch.bfloat16 and not trainer.precision.use_scaler
    seen: list[torch.dtype] = []
    trainer.raw_model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    trainer.oc.lr = trainer.schedule.lr = 3e-2
    losses = [trainer.train_step()[0].item() for _ in range(12)]
    assert seen and all(d == torch.bfloat16 for d in seen)  # matmuls really ran in bf16
    assert all(p.dtype == torch.float32 for p in trainer.raw_model.parameters())  # fp32 master weights
    assert losses[-1] < 0.7 * losses[0], losses


def test_fp16_on_cpu_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        make_trainer(tmp_path, 8, 1, precision="fp16")


def test_diverging_loss_stops_with_a_hint(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, 8, 1, max_iters=3, log_interval=1, tensorboard=False, progress=False)
    with torch.no_grad():
        trainer.raw_model.lm_head.weight.fill_(float("nan"))
    with pytest.raises(ValueError, match="loss became nan at iteration 1; lower optim.lr"):
        trainer.fit()
