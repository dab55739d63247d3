"""Beam search: token-for-token (and score) equality with `transformers`' `generate(num_beams=...)`."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from tiny_models import spread, tiny_hf_llama
from transformers import LlamaForCausalLM

from llmlab.generate import beam_search
from llmlab.models.llama import Llama
from llmlab.models.llama.hf import config_from_hf

VOCAB = 61


@pytest.fixture(scope="module")
def pair() -> tuple[LlamaForCausalLM, Llama]:
    """A tiny random HF Llama (large weights, so beams diverge) and the same weights as an llmlab Llama."""
    hf = spread(tiny_hf_llama(0, vocab_size=VOCAB, max_position_embeddings=64, tie_word_embeddings=False), 0.4)
    ours = Llama(config_from_hf(hf.config.to_dict()))
    missing, unexpected = ours.load_state_dict(hf.state_dict(), strict=False)
    assert not unexpected and not [k for k in missing if "rotary" not in k]
    return hf, ours.eval()


def hf_beam(hf: LlamaForCausalLM, x: torch.Tensor, n: int, **kw):
    return hf.generate(
        x,
        attention_mask=torch.ones_like(x),
        max_new_tokens=n,
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
        **kw,
    )


PROMPT = torch.randint(0, VOCAB, (2, 5), generator=torch.Generator().manual_seed(1))
# eos_token_id values are indices into `frequent` (tokens the beams emit early, see `frequent`), so that
# hypotheses finish at different lengths and the early-stopping rules matter.
CASES = [
    dict(num_beams=4, length_penalty=1.0, early_stopping=False, num_return_sequences=2, eos_token_id=[0, 1]),
    dict(num_beams=3, length_penalty=2.0, early_stopping=True, num_return_sequences=3, eos_token_id=0),
    dict(num_beams=4, length_penalty=-1.0, early_stopping="never", num_return_sequences=4, eos_token_id=1),
    dict(num_beams=4, length_penalty=0.5, early_stopping=False, num_return_sequences=4, eos_token_id=0),
    dict(num_beams=5, length_penalty=1.0, early_stopping="never", num_return_sequences=3, eos_token_id=[0, 1, 2]),
    dict(num_beams=4, length_penalty=1.0, early_stopping=True, num_return_sequences=4, eos_token_id=2),
    dict(num_beams=2, length_penalty=0.0, early_stopping=False, num_return_sequences=1, eos_token_id=None),
]


@pytest.fixture(scope="module")
def frequent(pair) -> list[int]:
    """The 3 most frequent tokens at generated positions 2-4 of a 4-beam search without EOS."""
    _, ours = pair
    seqs = beam_search(ours, PROMPT, 12, num_beams=4, num_return_sequences=4).sequences
    return [t for t, _ in Counter(seqs[:, 6:9].flatten().tolist()).most_common(3)]


def with_eos(case: dict, frequent: list[int]) -> dict:
    eos = case["eos_token_id"]
    if eos is not None:
        eos = frequent[eos] if isinstance(eos, int) else [frequent[i] for i in eos]
    return {**case, "eos_token_id": eos}


@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_beam_search_equals_transformers(pair, frequent, case: dict) -> None:
    hf, ours = pair
    case = with_eos(case, frequent)
    ref = hf_beam(hf, PROMPT, 12, pad_token_id=0, **case)
    out = beam_search(ours, PROMPT, 12, pad_token_id=0, **case)
    assert out.sequences.shape == ref.sequences.shape
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(out.sequences_scores, ref.sequences_scores, rtol=1e-4, atol=1e-4)
    no_cache = beam_search(ours, PROMPT, 12, pad_token_id=0, use_cache=False, **case)
    assert torch.equal(no_cache.sequences, out.sequences)


def test_cases_exercise_eos_and_early_stopping(pair, frequent) -> None:
    """Guard for the parity test: with these EOS ids, hypotheses do end early and lengths differ."""
    _, ours = pair
    assert len(frequent) == 3
    ended_early, shorter_output = False, False
    for case in [with_eos(c, frequent) for c in CASES[:-1]]:
        out = beam_search(ours, PROMPT, 12, pad_token_id=0, **case)
        eos = case["eos_token_id"]
        eos = [eos] if isinstance(eos, int) else eos
        ended_early |= bool(torch.isin(out.sequences[:, 5:-1], torch.tensor(eos)).any())
        shorter_output |= out.sequences.shape[1] < 5 + 12
    assert ended_early and shorter_output


def test_beam_search_beats_or_ties_greedy_log_likelihood(pair) -> None:
    _, ours = pair
    x = PROMPT[:1]
    greedy = beam_search(ours, x, 8, num_beams=1, length_penalty=0.0)
    beams = beam_search(ours, x, 8, num_beams=6, length_penalty=0.0)
    assert float(beams.sequences_scores[0]) >= float(greedy.sequences_scores[0]) - 1e-5
    # num_beams=1 is greedy decoding: the sum of log-probs of the argmax path
    with torch.no_grad():
        ids = x
        total = 0.0
        for _ in range(8):
            logp = torch.log_softmax(ours(ids).logits[0, -1], -1)
            nxt = int(logp.argmax())
            total += float(logp[nxt])
            ids = torch.cat([ids, torch.tensor([[nxt]])], 1)
    assert torch.equal(greedy.sequences, ids)
    assert abs(float(greedy.sequences_scores[0]) - total) < 1e-4


def test_beam_search_validates_arguments(pair) -> None:
    _, ours = pair
    with pytest.raises(ValueError, match="num_return_sequences=5 must be between 1 and num_beams=4"):
        beam_search(ours, PROMPT, 4, num_beams=4, num_return_sequences=5)
    with pytest.raises(ValueError, match="early_stopping"):
        beam_search(ours, PROMPT, 4, early_stopping="sometimes")
    with pytest.raises(ValueError, match=r"prompt of 5 tokens \+ max_new_tokens=60 exceeds .* 64 tokens"):
        beam_search(ours, PROMPT, 60)
    with pytest.raises(ValueError, match="num_beams"):
        beam_search(ours, PROMPT, 4, num_beams=0)


def test_beam_search_smollm2_equals_transformers(smollm2, smollm2_hf) -> None:
    model, tok = smollm2
    x = torch.tensor([tok.encode("The capital of France is")])
    kw = dict(num_beams=3, length_penalty=1.0, early_stopping=False, num_return_sequences=2, eos_token_id=tok.eos_id)
    ref = hf_beam(smollm2_hf, x, 8, pad_token_id=tok.eos_id, **kw)
    out = beam_search(model, x, 8, pad_token_id=tok.eos_id, **kw)
    assert torch.equal(out.sequences, ref.sequences)
    torch.testing.assert_close(out.sequences_scores, ref.sequences_scores, rtol=1e-4, atol=1e-4)
