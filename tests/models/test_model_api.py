"""Model API: output_hidden_states and logits_to_keep on GPT and Llama."""

from __future__ import annotations

import functools

import pytest
import torch

from llmlab.models.gpt import GPT, GPTConfig
from llmlab.models.llama.config import LlamaConfig
from llmlab.models.llama.model import Llama


def tiny(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if family == "gpt":
        return GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32)).eval()
    if family == "gpt-postnorm":
        return GPT(GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=4, n_embd=32, pre_norm=False)).eval()
    cfg = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    return Llama(cfg).eval()


@pytest.mark.parametrize("family", ["gpt", "gpt-postnorm", "llama"])
def test_hidden_states_feed_the_lm_head(family: str) -> None:
    model = tiny(family)
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model(ids, output_hidden_states=True)
        plain = model(ids)
    assert out.hidden_states.shape == (2, 6, 32)
    assert plain.hidden_states is None
    torch.testing.assert_close(out.logits, model.lm_head(out.hidden_states))
    torch.testing.assert_close(out.logits, plain.logits)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_logits_to_keep(family: str) -> None:
    model = tiny(family)
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        full = model(ids).logits
        last = model(ids, logits_to_keep=1).logits
        last3 = model(ids, logits_to_keep=3, output_hidden_states=True)
    assert last.shape == (2, 1, 50)
    torch.testing.assert_close(last[:, 0], full[:, -1])
    torch.testing.assert_close(last3.logits, full[:, -3:])
    assert last3.hidden_states.shape == (2, 6, 32)  # hidden states stay complete
    with pytest.raises(ValueError, match="logits_to_keep=0"):
        model(ids, ids, logits_to_keep=1)
    with pytest.raises(ValueError, match=">= 0"):
        model(ids, logits_to_keep=-1)


def test_generate_prefill_uses_last_logits_only() -> None:
    from llmlab.generate import generate

    model = tiny("llama")
    seen = []
    forward = model.forward

    @functools.wraps(forward)  # keeps the signature: the loop checks that forward takes logits_to_keep
    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        out = forward(*args, **kwargs)
        seen.append(out.logits.shape[1])
        return out

    model.forward = spy
    ids = torch.randint(0, 50, (1, 5), generator=torch.Generator().manual_seed(0))
    generate(model, ids, 3, temperature=0.0)
    assert seen == [1, 1, 1]  # the prefill of 5 tokens returned one row of logits
