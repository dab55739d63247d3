"""Prefix tuning (per-layer key/value prefixes) and prompt tuning (soft prompt embeddings)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from peft_helpers import VOCAB, sharpen, tiny_gpt, tiny_gpt_llamalike, tiny_llama, train_steps

from llmlab.peft import PrefixConfig, PromptConfig, adapters_disabled, get_peft_model, trainable_parameters
from llmlab.peft.prefix import PrefixEncoder, text_prefixes
from llmlab.peft.prompt import PromptEmbedding


def assert_trains_only_the_adapter(model, x, y, base: dict, base_logits: torch.Tensor) -> None:  # noqa: ANN001
    """A few steps lower the loss, leave every base weight (`base`: name -> original) untouched and gradient-free,
    and with the adapter disabled the model gives the base logits again."""
    losses = train_steps(model, x, y, steps=6, lr=5e-2)
    assert losses[-1] < losses[0] - 0.1, losses
    for n, p in model.named_parameters():
        if n in base:
            assert p.grad is None and torch.equal(p, base[n]), n
    with adapters_disabled(model), torch.no_grad():
        torch.testing.assert_close(model(x).logits, base_logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize("projection", [False, True])
def test_prefix_trains_with_a_frozen_base(make_model, batch, projection: bool) -> None:
    x, y = batch
    model = sharpen(make_model())
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        base_logits = model(x).logits
    cfg = PrefixConfig(num_virtual_tokens=4, prefix_projection=projection, encoder_hidden_size=16)
    get_peft_model(model, cfg)
    assert all(n.startswith("prefix_encoder.") for n, _ in trainable_parameters(model))
    with torch.no_grad():
        assert not torch.allclose(model(x).logits, base_logits, atol=1e-4)  # prefixes change outputs by design
    assert_trains_only_the_adapter(model, x, y, base, base_logits)


def test_prefix_from_text_equals_prepending_the_text() -> None:
    """Initialised from text, the prefixes are that text's cached keys/values and the real tokens sit after
    it (positions shifted by P, as in peft): the output equals the base model with the text prepended."""
    text_ids = [5, 9, 2]
    x = torch.tensor([[7, 1, 4, 3], [2, 8, 8, 6]])
    text = torch.tensor([text_ids, text_ids])
    for model in (tiny_gpt(), tiny_gpt_llamalike(), tiny_llama()):  # learned positions, RoPE in both families
        with torch.no_grad():
            expected = model(torch.cat([text, x], dim=1)).logits[:, 3:]
            base = model(x).logits
        cfg = PrefixConfig(num_virtual_tokens=3, prefix_tuning_init="TEXT", init_token_ids=text_ids)
        get_peft_model(model, cfg)
        with torch.no_grad():
            torch.testing.assert_close(model(x).logits, expected, rtol=1e-5, atol=1e-5)
            cache = model.make_kv_cache(2, 16)  # decoding with a cache: positions continue after P + past
            steps = [model(x[:, :2], kv_cache=cache).logits, model(x[:, 2:3], kv_cache=cache).logits]
            steps.append(model(x[:, 3:], kv_cache=cache).logits)
            torch.testing.assert_close(torch.cat(steps, dim=1), expected, rtol=1e-5, atol=1e-5)
            with adapters_disabled(model):  # no prefix, no shift
                torch.testing.assert_close(model(x).logits, base, rtol=0, atol=0)


def test_prefix_text_init_repeats_short_text_and_checks_its_settings() -> None:
    model = tiny_llama()
    with torch.no_grad():
        expected = model(torch.tensor([[5, 9, 5, 9, 5, 7]])).logits[:, 5:]
    get_peft_model(model, PrefixConfig(num_virtual_tokens=5, prefix_tuning_init="TEXT", init_token_ids=[5, 9]))
    with torch.no_grad():
        torch.testing.assert_close(model(torch.tensor([[7]])).logits, expected, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="needs init_token_ids"):
        get_peft_model(tiny_llama(), PrefixConfig(prefix_tuning_init="TEXT"))
    with pytest.raises(ValueError, match="prefix_projection=false"):
        PrefixConfig(prefix_tuning_init="TEXT", init_token_ids=[1], prefix_projection=True).validate()
    with pytest.raises(ValueError, match="'RANDOM' or 'TEXT'"):
        get_peft_model(tiny_llama(), PrefixConfig(prefix_tuning_init="WORDS"))


def test_prefix_counts_against_block_size() -> None:
    model = get_peft_model(tiny_gpt(block_size=16), PrefixConfig(num_virtual_tokens=4))
    model(torch.zeros(1, 12, dtype=torch.long))
    with pytest.raises(ValueError, match="4 prefix tokens \\+ 13 tokens exceed block_size=16"):
        model(torch.zeros(1, 13, dtype=torch.long))


@pytest.mark.parametrize("backend", ["sdpa", "eager"])
def test_prefix_under_kv_cache_decoding_and_padding(backend: str) -> None:
    models = [tiny_gpt(attention=backend), tiny_llama(attention=backend), tiny_gpt(attention=backend, position="alibi")]
    for model in models:  # bool masks, the is_causal path, and ALiBi's additive float mask
        get_peft_model(model, PrefixConfig(num_virtual_tokens=3, prefix_init_std=0.5))
        ids = torch.randint(0, VOCAB, (2, 7), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            full = model(ids).logits
            cache = model.make_kv_cache(2, 16)
            steps = [model(ids[:, :4], kv_cache=cache).logits]
            steps += [model(ids[:, 4:6], kv_cache=cache).logits]  # several new tokens with a past: explicit mask
            steps += [model(ids[:, 6:], kv_cache=cache).logits]  # one token: no mask
            torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)
            mask = torch.ones(2, 7, dtype=torch.long)
            torch.testing.assert_close(model(ids, attention_mask=mask).logits, full, rtol=1e-4, atol=1e-5)


def test_prefix_export_keeps_outputs(batch) -> None:
    x, y = batch
    model = get_peft_model(tiny_llama(), PrefixConfig(num_virtual_tokens=4, prefix_projection=True))
    train_steps(model, x, y, steps=2)
    with torch.no_grad():
        before = model(x).logits
    model.prefix_encoder.export_prefixes()
    assert not hasattr(model.prefix_encoder, "transform")
    assert model.prefix_encoder.embedding.shape == (4, 2 * 2 * 2 * 8)  # (P, L * 2 * nkv * hs)
    with torch.no_grad():
        torch.testing.assert_close(model(x).logits, before)


def test_prefix_rejects_linear_attention() -> None:
    with pytest.raises(ValueError, match="linear"):
        get_peft_model(tiny_gpt(attention="linear"), PrefixConfig())


def test_prompt_tuning_trains_and_prompt_positions_carry_no_loss(make_model, batch) -> None:
    x, y = batch
    model = sharpen(make_model())
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        base_logits = model(x).logits
    get_peft_model(model, PromptConfig(num_virtual_tokens=3))
    assert [n for n, _ in trainable_parameters(model)] == [
        next(n for n, _ in model.named_parameters() if n.endswith("prompt_embeddings"))
    ]
    out = model(x, y)
    assert out.logits.shape == (2, 12, VOCAB)  # the prompt positions are dropped from the logits
    torch.testing.assert_close(out.loss, F.cross_entropy(out.logits.reshape(-1, VOCAB), y.reshape(-1)))
    assert_trains_only_the_adapter(model, x, y, base, base_logits)


def test_prompt_equals_prepending_the_text_tokens() -> None:
    """Initialised from text, the soft prompt behaves exactly like those tokens in front of the input."""
    text_ids = [3, 14, 15]
    x = torch.tensor([[9, 2, 6, 5]])
    for model in (tiny_gpt(), tiny_llama()):
        with torch.no_grad():
            expected = model(torch.cat([torch.tensor([text_ids]), x], dim=1)).logits[:, 3:]
        get_peft_model(model, PromptConfig(num_virtual_tokens=3, prompt_tuning_init="TEXT", init_token_ids=text_ids))
        emb = next(m for m in model.modules() if isinstance(m, PromptEmbedding))
        with torch.no_grad():
            torch.testing.assert_close(emb.prompt_embeddings, emb.weight[text_ids])
            torch.testing.assert_close(model(x).logits, expected, rtol=1e-5, atol=1e-5)
            # attention mask: left padding of the real input still sees the prompt
            mask = torch.tensor([[1, 1, 1, 1]])
            torch.testing.assert_close(model(x, attention_mask=mask).logits, expected, rtol=1e-5, atol=1e-5)
            # KV cache: the prompt is prepended on the prefill call only
            cache = model.make_kv_cache(1, 16)
            a = model(x[:, :2], kv_cache=cache).logits
            b = model(x[:, 2:], kv_cache=cache).logits
            torch.testing.assert_close(torch.cat([a, b], dim=1), expected, rtol=1e-5, atol=1e-5)


def test_prompt_config_errors() -> None:
    with pytest.raises(ValueError, match="init_token_ids"):
        get_peft_model(tiny_gpt(), PromptConfig(prompt_tuning_init="TEXT"))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        get_peft_model(tiny_gpt(), PromptConfig(prompt_tuning_init="TEXT", init_token_ids=[VOCAB + 5]))
    assert isinstance(PrefixEncoder(2, 2, 8, 3).layer_kv(1)[0], torch.Tensor)


def test_finetune_tokenizes_the_init_text_of_prefix_and_prompt_tuning() -> None:
    """`llmlab finetune` YAML names the init text (`<method>_tuning_init_text`); the recipe tokenizes it."""
    from llmlab.recipes.finetune import FinetuneConfig, apply_method

    class CharTokenizer:  # ids = characters mod the tiny vocabulary
        def encode(self, text: str) -> list[int]:
            return [ord(ch) % VOCAB for ch in text]

    text = "good?"
    ids = CharTokenizer().encode(text)
    settings = {"num_virtual_tokens": 5}
    prefix = FinetuneConfig(
        method="prefix", peft={**settings, "prefix_tuning_init": "TEXT", "prefix_tuning_init_text": text}
    )
    model = tiny_llama()
    expected = text_prefixes(tiny_llama(), ids, 5)
    apply_method(model, prefix, "tiny", CharTokenizer())
    torch.testing.assert_close(model.prefix_encoder.prefixes(), expected)
    prompt = FinetuneConfig(
        method="prompt", peft={**settings, "prompt_tuning_init": "TEXT", "prompt_tuning_init_text": text}
    )
    model = tiny_llama()
    apply_method(model, prompt, "tiny", CharTokenizer())
    emb = next(m for m in model.modules() if isinstance(m, PromptEmbedding))
    torch.testing.assert_close(emb.prompt_embeddings, emb.weight[ids])


@pytest.mark.parametrize("family", [tiny_gpt, tiny_llama], ids=["gpt", "llama"])
def test_prompt_and_prefix_generate_with_the_kv_cache(family) -> None:
    """Cached greedy generation (prefill keeps only the last logits) equals the base model with the text prepended."""
    from llmlab.generate import generate

    text_ids, x = [3, 14, 15], torch.tensor([[1, 2, 7, 9]])
    expected = generate(sharpen(family()), torch.tensor([text_ids + x[0].tolist()]), 6, temperature=0)[:, 3:]
    for cfg in (
        PromptConfig(num_virtual_tokens=3, prompt_tuning_init="TEXT", init_token_ids=text_ids),
        PrefixConfig(num_virtual_tokens=3, prefix_tuning_init="TEXT", init_token_ids=text_ids),
    ):
        model = get_peft_model(sharpen(family()), cfg)
        for use_cache in (True, False):
            out = generate(model, x, 6, temperature=0, use_cache=use_cache)
            assert out.tolist() == expected.tolist(), (type(cfg).__name__, use_cache)


@pytest.mark.parametrize("family", [tiny_gpt, tiny_llama], ids=["gpt", "llama"])
def test_prompt_and_prefix_decode_left_padded_batches_and_beams(family) -> None:
    """Left-padded rows (explicit position_ids) decode as each row alone; beam search agrees with and without
    the cache; speculative decoding refuses a prompt-tuned model with one line."""
    from llmlab.generate import generate
    from llmlab.generate.beam import beam_search
    from llmlab.generate.speculative import speculative_generate

    ids = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 11, 12, 13]])
    mask = (ids != 0).long()
    for cfg in (PromptConfig(num_virtual_tokens=4), PrefixConfig(num_virtual_tokens=4, prefix_init_std=0.5)):
        model = get_peft_model(sharpen(family()), cfg)
        for use_cache in (True, False):
            batch = generate(model, ids, 5, temperature=0, attention_mask=mask, use_cache=use_cache)[:, -5:]
            alone = [
                generate(model, ids[:1], 5, temperature=0)[0, -5:],
                generate(model, ids[1:, 2:], 5, temperature=0)[0, -5:],
            ]
            assert batch.tolist() == [a.tolist() for a in alone], (type(cfg).__name__, use_cache)
        beams = beam_search(model, ids[:1], 5, num_beams=3).sequences
        assert torch.equal(beams, beam_search(model, ids[:1], 5, num_beams=3, use_cache=False).sequences)
    with pytest.raises(ValueError, match="prompt-tuned model"):
        speculative_generate(get_peft_model(family(), PromptConfig()), ids[:1], 4)
