"""The SFT loss runs the LM head only on learned positions: same losses and gradients as the full logits."""

from __future__ import annotations

import pytest
import torch
from finetune_helpers import tiny_gpt, tiny_llama

from llmlab.data.sft import IGNORE_INDEX, SFTExample, collate_rows
from llmlab.peft import LoraConfig, PromptConfig, get_peft_model
from llmlab.train.sft_loop import sft_logits, sft_token_losses, token_losses

VOCAB = 64


def _example(prompt: list[int], response: list[int]) -> SFTExample:
    return SFTExample(prompt + response, [IGNORE_INDEX] * len(prompt) + response)


def _batches() -> list[dict[str, torch.Tensor]]:
    a = _example([5, 9, 11, 3], [7, 8, 2])
    b = _example([12, 13], [14, 15, 16, 17])
    c = _example([20, 21, 22], [23])
    return [collate_rows([[a], [b], [c]], pad_id=0), collate_rows([[a, c], [b]], pad_id=0)]  # padded; packed


@pytest.mark.parametrize(
    "make",
    [
        lambda: tiny_gpt(VOCAB, dropout=0.0),
        lambda: tiny_llama(VOCAB),
        lambda: get_peft_model(
            tiny_llama(VOCAB), LoraConfig(r=4, target_modules="all-linear", modules_to_save=["lm_head"])
        ),
        lambda: get_peft_model(tiny_llama(VOCAB), PromptConfig(num_virtual_tokens=3)),
    ],
    ids=["gpt-full", "llama-full", "llama-lora-with-head", "llama-prompt"],
)
def test_selective_head_equals_full_logits(make) -> None:
    if hasattr(make(), "_peft_prompt_hooks"):  # prompt tuning
        with pytest.raises(ValueError, match="not a 4-D mask"):  # packed rows would share the soft prompt
            sft_token_losses(make(), _batches()[1])
        batches = _batches()[:1]
    else:
        batches = _batches()
    for batch in batches:
        grads = []
        for fn in (sft_token_losses, lambda m, b: token_losses(sft_logits(m, b), b["labels"])):
            torch.manual_seed(0)
            model = make()
            losses = fn(model, batch)  # (B, T)
            losses.sum().backward()
            grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
            if len(grads) == 1:
                selective = losses.detach()
        torch.testing.assert_close(selective, losses.detach(), rtol=1e-5, atol=1e-6)
        assert bool((selective[batch["labels"] == IGNORE_INDEX] == 0).all()) and bool(
            (selective[batch["labels"] != IGNORE_INDEX] > 0).all()
        )
        assert grads[0].keys() == grads[1].keys() and grads[0]
        for name in grads[0]:
            torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6)


class ListStream:
    """Hands out fixed batches in order (the `SFTBatchStream` interface)."""

    def __init__(self, batches: list[dict[str, torch.Tensor]]) -> None:
        self.batches, self.pos = batches, 0

    def next_batch(self) -> dict[str, torch.Tensor]:
        self.pos += 1
        return self.batches[self.pos - 1]

    def state_dict(self) -> dict:
        return {"pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.pos = state["pos"]


def _one_sgd_step_gradient(tmp_path, batches: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """-gradient of one step over `batches` as micro-batches (SGD, lr 1, no clipping or decay)."""
    from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
    from llmlab.train.sft_loop import SFTTrainer

    model = tiny_gpt(VOCAB, dropout=0.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    tc = TrainConfig(batch_size=1, grad_accum=len(batches), max_iters=1, device="cpu", precision="fp32")
    oc = OptimConfig(name="sgd", lr=1.0, weight_decay=0.0, grad_clip=0.0)
    sc = ScheduleConfig(name="constant", warmup_iters=0, min_lr=0.0)
    trainer = SFTTrainer(model, ListStream(batches), tc, oc, sc, tmp_path, task_names=["t"], save_checkpoints=False)
    trainer.train_step()
    return {n: before[n] - p.detach() for n, p in model.named_parameters()}


def test_grad_accum_normalises_by_the_steps_learned_tokens(tmp_path) -> None:
    """Micro-batches with 3 and 5 learned tokens give the gradient of one batch holding all of them (the mean over
    the step's 8 tokens), not the mean of the two micro-batch means."""
    a = _example([5, 9, 11, 3], [7, 8, 2])
    b = _example([12, 13], [14, 15, 16, 17])
    c = _example([20, 21, 22], [23])
    micro = [collate_rows([[a]], pad_id=0), collate_rows([[b], [c]], pad_id=0)]
    whole = [collate_rows([[a], [b], [c]], pad_id=0)]
    assert [int((m["labels"] != IGNORE_INDEX).sum()) for m in micro] == [3, 5]
    got, want = _one_sgd_step_gradient(tmp_path / "a", micro), _one_sgd_step_gradient(tmp_path / "b", whole)
    assert any(g.abs().sum() > 0 for g in want.values())
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-6, msg=name)
