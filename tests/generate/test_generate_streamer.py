"""The incremental detokenizer never splits a multi-byte character and reproduces the full decode."""

from __future__ import annotations

import pytest

from llmlab.generate import TextStreamer, stream_text
from llmlab.tokenizers import train_tokenizer_from_iterator

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 20,
    "To be, or not to be, that is the question. " * 20,
]
TEXTS = [
    "你好，世界！今天天气很好。",
    "emoji 🙂🚀 and accents: héllo wörld — naïve café",
    "混合 text 中文 and 🙂 together\nnew line 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
]


@pytest.fixture(scope="module")
def bpe():
    # A small byte-level BPE trained on English only: CJK characters and emoji are split into byte tokens.
    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300)


@pytest.mark.parametrize("text", TEXTS)
def test_deltas_concatenate_to_the_full_decode_without_replacement_chars(bpe, text: str) -> None:
    ids = bpe.encode(text)
    assert bpe.decode(ids) == text
    # The test is meaningful: decoding token by token does produce broken characters.
    assert any("\ufffd" in bpe.decode([i]) for i in ids)
    streamer = TextStreamer(bpe)
    deltas = [streamer.put(i) for i in ids]
    deltas.append(streamer.end())
    assert "".join(deltas) == text
    assert not any("\ufffd" in d for d in deltas)
    assert "" in deltas[:-1]  # some tokens were held back until their character was complete


def test_streamer_with_prompt_context_and_stream_text(bpe) -> None:
    prompt, continuation = "中文：", "你好🙂世界"
    prompt_ids = bpe.encode(prompt)
    all_ids = bpe.encode(prompt + continuation)
    assert all_ids[: len(prompt_ids)] == prompt_ids
    new_ids = all_ids[len(prompt_ids) :]
    pieces = list(stream_text(bpe, new_ids, prompt_ids=prompt_ids))
    assert "".join(pieces) == continuation
    assert all(p and "\ufffd" not in p for p in pieces)


def test_incomplete_character_at_the_end_is_flushed_by_end(bpe) -> None:
    ids = bpe.encode("ok 你")
    streamer = TextStreamer(bpe)
    out = "".join(streamer.put(i) for i in ids[:-1])  # the last byte of 你 is missing
    assert "\ufffd" not in out
    assert out + streamer.end() == bpe.decode(ids[:-1])
