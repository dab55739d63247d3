"""Model API: output_hidden_states and logits_to_keep on GPT and Llama."""

from __future__ import annotations

import functools

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama


def tiny(family: str) -> torch.nn.Module:
    if family == "llama":
        return tiny_llama(vocab_size=50, max_position_embeddings=32)
    return tiny_gpt(vocab_size=50, n_head=4, pre_norm=family != "gpt-postnorm")


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


@pytest.mark.parametrize("family", ["gpt", "gpt-postnorm", "llama"])
def test_heads_find_the_final_hidden_state_through_the_accessors(family: str) -> None:
    from llmlab.models.heads import HiddenStateCapture, final_hidden_module

    model = tiny(family)
    expected = model.layers[-1] if family == "gpt-postnorm" else model.final_norm
    assert final_hidden_module(model) is expected
    ids = torch.randint(0, 50, (2, 6), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), HiddenStateCapture(model) as cap:
        out = model(ids, output_hidden_states=True)
    torch.testing.assert_close(cap.hidden, out.hidden_states)
