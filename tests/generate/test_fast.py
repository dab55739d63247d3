"""The compiled static-cache decoder (`llmlab.generate.fast`) gives the eager loop's greedy tokens."""

from __future__ import annotations

import pytest
import torch
from fast_quant_stubs import quantize_layers
from tiny_models import tiny_gpt, tiny_llama

from llmlab.generate import generate
from llmlab.generate.fast import FastDecoder, prompt_bucket
from llmlab.generate.fast_weights import FusedLinear


def _prompts(model, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(3, model.config.vocab_size, (batch, length), generator=torch.Generator().manual_seed(seed))


def _fast_greedy(decoder: FastDecoder, ids: torch.Tensor, n: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy tokens (B, n) through prefill + steps (the path `stream_generate(compile=True)` takes)."""
    logits, cache, slot = decoder.prefill(ids, n, mask)
    out = []
    for i in range(n):
        out.append(logits.argmax(-1, keepdim=True))
        if i + 1 < n:
            logits = decoder.step(out[-1], slot + i, cache)
    return torch.cat(out, dim=1)


@pytest.mark.parametrize(("attention", "mlp"), [("float", "float"), ("int8", "int4"), ("int4", "int8")])
def test_static_cache_equals_eager_generate(attention, mlp):
    model = quantize_layers(tiny_llama(), attention, mlp)
    ids = _prompts(model, 2, 7)
    want = generate(model, ids, 12, temperature=0.0)[:, 7:]
    decoder = FastDecoder(model, compile=False)
    assert _fast_greedy(decoder, ids, 12).tolist() == want.tolist()
    assert isinstance(decoder.net.layers[0].qkv.parts[0], FusedLinear)  # q/k/v fused into one projection


def test_left_padded_batch_equals_eager():
    model = tiny_llama(seed=1)
    ids = _prompts(model, 3, 9, seed=2)
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # row 0: 5 real tokens after 4 pads
    mask[2, :1] = 0
    ids = ids.masked_fill(mask == 0, 0)
    want = generate(model, ids, 10, temperature=0.0, attention_mask=mask)[:, 9:]
    got = _fast_greedy(FastDecoder(model, compile=False), ids, 10, mask)
    assert got.tolist() == want.tolist()
    alone = generate(model, ids[:1, 4:], 10, temperature=0.0)[:, 5:]  # the padded row decodes as it would alone
    assert got[:1].tolist() == alone.tolist()


def test_compiled_stream_generate_equals_eager():
    """One compile: int8 attention, int4 MLP, float LM head (all three kernels' compiled forms), batch 2."""
    model = quantize_layers(tiny_llama(seed=3), "int8", "int4")
    ids = _prompts(model, 2, 5, seed=4)
    want = generate(model, ids, 9, temperature=0.0)
    got = generate(model, ids, 9, temperature=0.0, compile=True)
    assert got.tolist() == want.tolist()


def test_prompt_buckets_and_refusals():
    assert [prompt_bucket(n) for n in (1, 16, 17, 64, 65)] == [16, 16, 32, 64, 128]
    with pytest.raises(ValueError, match="Llama"):
        FastDecoder(tiny_gpt())
    model = tiny_llama()
    with pytest.raises(ValueError, match="kv_cache"):
        generate(model, _prompts(model, 1, 3), 2, compile=True, kv_cache=model.make_kv_cache(1, 8))
    with pytest.raises(ValueError, match="context"):
        FastDecoder(model, compile=False).prefill(_prompts(model, 1, 100), 40)


@pytest.mark.slow
def test_smollm2_compiled_greedy_equals_eager(smollm2):
    model, tokenizer = smollm2
    ids = torch.tensor([tokenizer.encode("The capital of France is a city that")])
    want = generate(model, ids, 16, temperature=0.0, eos_token_id=None)
    got = generate(model, ids, 16, temperature=0.0, eos_token_id=None, compile=True)
    assert got.tolist() == want.tolist()
