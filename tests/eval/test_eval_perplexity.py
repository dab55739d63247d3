"""Sliding-window perplexity, bits per character and bits per byte."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from tiny_models import spread, tiny_gpt

from llmlab.eval import evaluate_perplexity, score_tokens, sliding_windows
from llmlab.models.gpt import GPT
from llmlab.tokenizers import train_tokenizer_from_iterator

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\nAll: Speak, speak. Ça va — naïve 你好!\n" * 3


@pytest.fixture(scope="module")
def char_tok():
    return train_tokenizer_from_iterator("char", [TEXT], vocab_size=0, special_tokens={"bos": "<|bos|>"})


def spread_gpt(vocab_size: int, block_size: int = 16) -> GPT:
    return spread(tiny_gpt(0, vocab_size=vocab_size, block_size=block_size))


def uniform_gpt(vocab_size: int) -> GPT:
    model = spread_gpt(vocab_size)
    with torch.no_grad():
        model.lm_head.weight.zero_()  # logits are all 0: a uniform distribution over the vocabulary
    return model


def test_uniform_model_has_perplexity_vocab_size(char_tok) -> None:
    model = uniform_gpt(char_tok.vocab_size)
    result = evaluate_perplexity(model, char_tok, TEXT, stride=5)
    v = char_tok.vocab_size
    assert result["perplexity"] == pytest.approx(v, rel=1e-5)
    assert result["loss"] == pytest.approx(math.log(v), rel=1e-6)
    # char-level: one token per character, so bits per char = log2(V); bytes > chars (é, 你 are multi-byte)
    assert result["tokens_scored"] == len(TEXT) - 1 == result["characters"]
    assert result["bits_per_char"] == pytest.approx(math.log2(v), rel=1e-6)
    assert result["bytes"] == len(TEXT[1:].encode("utf-8")) > result["characters"]
    assert result["bits_per_byte"] == pytest.approx(math.log2(v) * result["characters"] / result["bytes"], rel=1e-6)


def test_bits_per_char_and_byte_from_total_nats(char_tok) -> None:
    model = spread_gpt(char_tok.vocab_size)
    r = evaluate_perplexity(model, char_tok, TEXT)
    assert r["loss"] == pytest.approx(r["total_nats"] / r["tokens_scored"])
    assert r["perplexity"] == pytest.approx(math.exp(r["loss"]))
    assert r["bits_per_char"] == pytest.approx(r["total_nats"] / math.log(2) / r["characters"])
    assert r["bits_per_byte"] == pytest.approx(r["total_nats"] / math.log(2) / r["bytes"])
    with_bos = evaluate_perplexity(model, char_tok, TEXT, add_bos=True)
    assert with_bos["tokens_scored"] == len(TEXT) and with_bos["characters"] == len(TEXT)


def test_stride_equal_to_block_size_is_the_plain_chunked_computation(char_tok) -> None:
    model = spread_gpt(char_tok.vocab_size, block_size=16)
    ids = torch.tensor(char_tok.encode(TEXT))
    expected = 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, 16):
            x = ids[start : start + 16][None]
            y = ids[start + 1 : start + 17][None]
            x = x[:, : y.size(1)]
            expected += F.cross_entropy(model(x).logits[0], y[0], reduction="sum").item()
    nats, n = score_tokens(model, ids.tolist(), stride=16, batch_size=3)
    assert n == len(ids) - 1
    assert nats == pytest.approx(expected, rel=1e-5)


def test_sliding_window_scores_every_token_once_with_maximal_context(char_tok) -> None:
    model = spread_gpt(char_tok.vocab_size, block_size=8)
    ids = char_tok.encode(TEXT[:40])
    # Brute force: token j is predicted from the (at most) 8 tokens before it.
    expected = 0.0
    with torch.no_grad():
        for j in range(1, len(ids)):
            ctx = torch.tensor(ids[max(0, j - 8) : j])[None]
            expected -= torch.log_softmax(model(ctx).logits[0, -1], -1)[ids[j]].item()
    nats, n = score_tokens(model, ids, stride=1, batch_size=7)
    assert nats == pytest.approx(expected, rel=1e-5)
    # any stride: every target 1..N-1 is scored exactly once, with >= block_size - stride tokens of context
    windows = sliding_windows(len(ids), 8, 3)
    scored = [t for w in windows for t in range(w.end - w.n_new + 1, w.end + 1)]
    assert scored == list(range(1, len(ids)))
    assert all(w.end - w.begin <= 8 for w in windows)
    assert all(w.end - w.begin - w.n_new >= 8 - 3 for w in windows[1:] if w.end - w.begin == 8)


def test_sliding_windows_rejects_bad_stride_and_short_text(char_tok) -> None:
    with pytest.raises(ValueError, match="stride"):
        sliding_windows(100, 8, 9)
    with pytest.raises(ValueError, match="too short"):
        evaluate_perplexity(spread_gpt(char_tok.vocab_size), char_tok, "F")


def test_scored_characters_exclude_only_the_first_token(char_tok) -> None:
    text = "€€ First Citizen"  # '€' is not in the vocabulary: it encodes to <|unk|>, which decodes differently
    assert char_tok.decode(char_tok.encode(text)[:1]) != "€"
    r = evaluate_perplexity(uniform_gpt(char_tok.vocab_size), char_tok, text)
    assert r["tokens_scored"] == len(text) - 1 == r["characters"]
    assert r["bytes"] == len(text[1:].encode("utf-8"))
