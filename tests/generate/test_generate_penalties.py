"""Penalties, min-p, stop strings/tokens and seeded sampling in `llmlab.generate` (parity with `transformers`)."""

from __future__ import annotations

import pytest
import torch
from tiny_models import spread, tiny_gpt, tiny_hf_llama
from transformers.generation import MinPLogitsWarper, RepetitionPenaltyLogitsProcessor

from llmlab.generate import (
    FrequencyPresencePenaltyProcessor,
    MinPProcessor,
    RepetitionPenaltyProcessor,
    StopOnTokens,
    StopStringHoldback,
    build_processors,
    generate,
    generate_text,
    stream_generate_text,
)
from llmlab.models.gpt import GPT
from llmlab.models.llama import Llama
from llmlab.models.llama.hf import config_from_hf
from llmlab.tokenizers import train_tokenizer_from_iterator

VOCAB = 61


def spread_gpt(vocab_size: int = VOCAB) -> GPT:
    return spread(tiny_gpt(0, vocab_size=vocab_size, block_size=64))


def test_repetition_penalty_equals_transformers() -> None:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 20, (3, 12), generator=g)
    logits = torch.randn(3, 20, generator=g) * 3
    for penalty in (1.5, 0.7):
        ref = RepetitionPenaltyLogitsProcessor(penalty)(ids, logits.clone())
        torch.testing.assert_close(RepetitionPenaltyProcessor(penalty)(ids, logits), ref)
    out = RepetitionPenaltyProcessor(2.0)(torch.tensor([[1, 2, 2]]), torch.tensor([[1.0, 4.0, -4.0, 3.0]]))
    assert out.tolist() == [[1.0, 2.0, -8.0, 3.0]]  # positive / 2, negative * 2 (once, however often seen)
    with pytest.raises(ValueError, match="repetition_penalty"):
        RepetitionPenaltyProcessor(0.0)


def test_min_p_equals_transformers_and_keeps_the_top_token() -> None:
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 30, generator=g) * 2
    for min_p in (0.05, 0.3, 0.9):
        ours = MinPProcessor(min_p)(None, logits)
        ref = MinPLogitsWarper(min_p)(None, logits.clone())
        assert torch.equal(torch.isfinite(ours), torch.isfinite(ref))
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(MinPProcessor(0.2)(None, probs.log())).tolist()
    assert kept == [[True, True, True, False]]  # threshold 0.2 * 0.5 = 0.1
    assert torch.isfinite(MinPProcessor(1.0)(None, probs.log())).sum() == 1
    assert len(build_processors(temperature=0.8, min_p=0.1)) == 2  # temperature, then min-p
    with pytest.raises(ValueError, match="min_p"):
        MinPProcessor(1.5)


def test_frequency_and_presence_penalties_follow_openai() -> None:
    ids = torch.tensor([[0, 1, 2, 2, 3]])  # prompt = first 2 tokens, completion = 2, 2, 3
    logits = torch.zeros(1, 5)
    out = FrequencyPresencePenaltyProcessor(frequency_penalty=0.5, presence_penalty=1.0, prompt_len=2)(ids, logits)
    # logit -= count * frequency + (count > 0) * presence; prompt tokens 0 and 1 are not counted
    assert out.tolist() == [[0.0, 0.0, -2.0, -1.5, 0.0]]


def test_greedy_with_repetition_penalty_equals_transformers() -> None:
    hf = tiny_hf_llama(
        0, vocab_size=VOCAB, num_key_value_heads=None, max_position_embeddings=2048, tie_word_embeddings=False
    )
    ours = Llama(config_from_hf(hf.config.to_dict()))
    ours.load_state_dict(hf.state_dict(), strict=False)
    x = torch.randint(0, VOCAB, (2, 6), generator=torch.Generator().manual_seed(3))
    kw = dict(max_new_tokens=15, do_sample=False, pad_token_id=0, eos_token_id=None)
    ref = hf.generate(x, attention_mask=torch.ones_like(x), repetition_penalty=1.3, **kw)
    plain = hf.generate(x, attention_mask=torch.ones_like(x), **kw)
    out = generate(ours, x, 15, temperature=0, repetition_penalty=1.3)
    assert torch.equal(out, ref)
    assert not torch.equal(ref, plain)  # the penalty changed the continuation


def test_penalties_change_sampling_and_seeded_sampling_is_reproducible() -> None:
    model = spread_gpt()
    prompt = torch.zeros(2, 1, dtype=torch.long)
    greedy = generate(model, prompt, 30, temperature=0)
    fresh = generate(model, prompt, 30, temperature=0, presence_penalty=1e4)  # never repeat a generated token
    assert any(len(set(r[1:].tolist())) < 30 for r in greedy)
    assert all(len(set(r[1:].tolist())) == 30 for r in fresh)
    kw = dict(temperature=0.9, top_p=0.95, min_p=0.05, repetition_penalty=1.2, frequency_penalty=0.3)
    a = generate(model, prompt, 20, seed=11, **kw)
    torch.manual_seed(99)
    assert torch.equal(a, generate(model, prompt, 20, seed=11, **kw))
    assert not torch.equal(a, generate(model, prompt, 20, seed=12, **kw))


# ---------------------------------------------------------------- stop strings and stop tokens
CORPUS = ["Hello world. The end is near 你好世界 END of the story. " * 20]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300)


class Script:
    """A logits processor that forces a fixed continuation (to test stopping on known text)."""

    def __init__(self, script: list[int], prompt_len: int) -> None:
        self.script, self.prompt_len = script, prompt_len

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        step = min(input_ids.size(1) - self.prompt_len, len(self.script) - 1)
        forced = torch.full_like(logits, float("-inf"))
        forced[:, self.script[step]] = 0.0
        return forced


def test_stop_strings_across_token_boundaries(tok) -> None:
    model = spread_gpt(tok.vocab_size)
    prompt = tok.encode("Hello")
    text = " world. The end is near 你好世界 END of the story."
    script = tok.encode(text)
    pieces = [tok.decode([t]) for t in script]
    assert any("\ufffd" in p for p in pieces)  # some Chinese characters are split over byte tokens
    run = dict(temperature=0, logits_processors=[Script(script, len(prompt))])
    assert generate_text(model, tok, prompt, len(script), **run) == text
    # "d is n" spans the tokens of "end", " is" and " near"; "好世" spans byte-level pieces.
    for stop, expected in [("d is n", " world. The en"), ("好世", " world. The end is near 你"), ("END", None)]:
        expected = expected if expected is not None else text[: text.index("END")]
        out = generate_text(model, tok, prompt, len(script), stop=[stop, "never-seen"], **run)
        assert out == expected
        deltas = list(stream_generate_text(model, tok, prompt, len(script), stop=stop, **run))
        assert "".join(deltas) == expected and all("\ufffd" not in d for d in deltas)
        ids = generate(model, torch.tensor([prompt]), len(script), stop=stop, tokenizer=tok, **run)[0]
        generated = tok.decode(ids[len(prompt) :].tolist())
        assert stop in generated and stop not in tok.decode(ids[len(prompt) : -1].tolist())  # ends at the stop
    with pytest.raises(ValueError, match="tokenizer="):
        generate(model, torch.tensor([prompt]), 3, stop=["x"])


def test_stop_tokens_and_criteria(tok) -> None:
    model = spread_gpt(tok.vocab_size)
    prompt = tok.encode("Hello")
    script = tok.encode(" world. The end")
    run = dict(temperature=0, logits_processors=[Script(script, len(prompt))])
    out = generate(model, torch.tensor([prompt]), 10, stopping_criteria=[StopOnTokens(script[2])], **run)
    assert out[0, len(prompt) :].tolist() == script[:3]
    out = generate(model, torch.tensor([prompt]), 10, eos_token_id=[999, script[1]], **run)
    assert out[0, len(prompt) :].tolist() == script[:2]


def test_stop_string_holdback() -> None:
    hb = StopStringHoldback(["</s>", "\n\n"])
    assert hb.put("Hello <") == "Hello "  # "<" may start "</s>": held back
    assert hb.put("b>") == "<b>"  # it did not
    assert hb.put(" end\n") == " end"
    assert hb.put("\nmore") == "" and hb.stopped
    assert hb.put("ignored") == "" and hb.end() == ""
    other = StopStringHoldback(["STOP"])
    assert other.put("ST") == "" and other.end() == "ST"  # the stream ended: release the held text
