"""`seq2seq_generate` against `transformers`' generate (greedy and beam, T5 v1.0/v1.1 and BART), its cache
(encoder once, cross-attention keys/values once), sampling and argument errors."""

from __future__ import annotations

import pytest
import torch
from seq2seq_models import hf_generated, sources, spread, tiny_hf_bart, tiny_hf_t5, to_llmlab

from llmlab.config.sampling import SamplingConfig
from llmlab.generate.seq2seq import seq2seq_generate
from llmlab.models.t5 import T5

CASES = {
    "t5-relu": lambda: spread(tiny_hf_t5("relu"), 0.5),
    "t5-gated-gelu": lambda: spread(tiny_hf_t5("gated-gelu"), 0.5),
    "bart": lambda: spread(tiny_hf_bart(), 0.3),
}
SETTINGS = [dict(num_beams=1), dict(num_beams=3, length_penalty=0.6), dict(num_beams=4, length_penalty=1.5)]


@pytest.fixture(scope="module", params=list(CASES))
def pair(request, tmp_path_factory):
    hf = CASES[request.param]()
    return hf, to_llmlab(hf, tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("settings", SETTINGS, ids=["greedy", "beam3-lp0.6", "beam4-lp1.5"])
def test_tokens_equal_transformers(pair, settings):
    hf, model = pair
    ids, mask = sources()
    ref = hf_generated(hf, ids, mask, max_new_tokens=12, **settings)
    assert seq2seq_generate(model, ids, mask, max_new_tokens=12, **settings) == ref
    assert len({tuple(r) for r in ref}) == 3  # the rows differ: the comparison is not vacuous


@pytest.mark.parametrize("num_beams", [1, 3])
def test_eos_ends_rows_like_transformers(pair, num_beams):
    """Use a token the model emits mid-row as EOS: rows then stop at different lengths on both sides."""
    hf, model = pair
    ids, mask = sources()
    first = seq2seq_generate(model, ids, mask, max_new_tokens=12, num_beams=num_beams)
    eos = first[0][3]
    settings = dict(num_beams=num_beams, length_penalty=0.0, eos_token_id=eos)  # 0: shorter hypotheses win
    ref = hf_generated(hf, ids, mask, max_new_tokens=12, **settings)
    got = seq2seq_generate(model, ids, mask, max_new_tokens=12, **settings)
    assert got == ref
    assert any(len(row) < 12 and row[-1] == eos for row in got)


def _count_calls(modules: list[torch.nn.Module]) -> list[int]:
    counts = [0] * len(modules)
    for i, module in enumerate(modules):
        module.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts[i] + 1))
    return counts


@pytest.mark.parametrize("num_beams", [1, 3])
def test_encoder_and_cross_attention_projections_run_once(num_beams):
    torch.manual_seed(0)
    model = T5.from_preset("t5-tiny").eval()
    ids, mask = sources(vocab=256)
    encoder_calls = _count_calls([model.encoder])
    cross_k = _count_calls([layer.cross_attn.k_proj for layer in model.decoder.layers])
    cross_v = _count_calls([layer.cross_attn.v_proj for layer in model.decoder.layers])
    self_k = _count_calls([model.decoder.layers[0].self_attn.k_proj])
    out = seq2seq_generate(model, ids, mask, max_new_tokens=6, num_beams=num_beams, eos_token_id=[])
    assert all(len(row) == 6 for row in out)
    assert encoder_calls == [0]  # the stack module itself is never called: encode() runs its layers
    assert cross_k == [1, 1] and cross_v == [1, 1]  # projected from the encoder output once per layer
    assert self_k == [6]  # one decoder step per new token


def test_encoder_runs_once():
    model = T5.from_preset("t5-tiny").eval()
    calls = []
    original = model.encode
    model.encode = lambda *a, **k: calls.append(1) or original(*a, **k)
    seq2seq_generate(model, torch.tensor([[5, 6, 7]]), max_new_tokens=5, num_beams=2, eos_token_id=[])
    assert calls == [1]


@pytest.mark.parametrize("num_beams", [1, 3])
def test_no_cache_gives_the_same_tokens(pair, num_beams):
    _, model = pair
    ids, mask = sources()
    cached = seq2seq_generate(model, ids, mask, max_new_tokens=10, num_beams=num_beams)
    plain = seq2seq_generate(model, ids, mask, max_new_tokens=10, num_beams=num_beams, sampling=SamplingConfig(temperature=0.0, use_cache=False))
    assert cached == plain


def test_sampling_is_seeded_and_uses_the_processors(pair):
    _, model = pair
    ids, mask = sources()
    hot = SamplingConfig(temperature=1.5, seed=7)
    a = seq2seq_generate(model, ids, mask, max_new_tokens=10, sampling=hot)
    assert a == seq2seq_generate(model, ids, mask, max_new_tokens=10, sampling=hot)
    assert a != seq2seq_generate(model, ids, mask, max_new_tokens=10, sampling=hot.replace(seed=8))
    top1 = SamplingConfig(temperature=1.5, top_k=1, seed=7)  # top-k 1 = greedy, whatever the seed
    assert seq2seq_generate(model, ids, mask, max_new_tokens=10, sampling=top1) == seq2seq_generate(model, ids, mask, max_new_tokens=10)


def test_argument_errors():
    model = T5.from_preset("t5-tiny", block_size=8)
    with pytest.raises(ValueError, match="block_size"):
        seq2seq_generate(model, torch.tensor([[1, 2]]), max_new_tokens=10)
    with pytest.raises(ValueError, match="input_ids"):
        seq2seq_generate(model, torch.tensor([1, 2]), max_new_tokens=2)
    with pytest.raises(ValueError, match="encoder-decoder"):
        seq2seq_generate(torch.nn.Linear(2, 2), torch.tensor([[1, 2]]))
