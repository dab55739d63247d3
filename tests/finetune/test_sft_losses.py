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
