"""Chat KV-cache reuse: replies equal a session that re-prefills every turn, and only new tokens are prefilled.

Tiny random models (a GPT with learned positions and a Llama with RoPE + GQA), a small context so the oldest
turns get dropped, and `/reset` in the middle: every path that must invalidate the cache is exercised.
"""

from __future__ import annotations

import io

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama
from torch import nn

from llmlab.generate.chat import ChatSession, common_prefix_len
from llmlab.nn.kv_cache import KVCache
from llmlab.recipes.chat import run_chat
from llmlab.tokenizers import train_tokenizer_from_iterator

CORPUS = ["Hello there, how are you? I am fine. What is new today? Nothing much.\n" * 30]
SPECIALS = {"pad": "<|pad|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"}
LINES = ["hello there", "how are you", "what is new today", "/reset", "I am fine", "nothing much", "hello", "bye"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300, special_tokens=SPECIALS)


class CountingLM(nn.Module):
    """Wraps a model and records how many tokens each forward runs (no hooks: those disable cache reuse)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.config = model.config
        self.calls: list[int] = []

    def make_kv_cache(self, batch_size: int, max_len: int) -> KVCache:
        return self.inner.make_kv_cache(batch_size, max_len)

    def forward(self, input_ids: torch.Tensor, kv_cache: KVCache | None = None, logits_to_keep: int = 0):  # noqa: ANN201
        self.calls.append(input_ids.size(1))
        return self.inner(input_ids, kv_cache=kv_cache, logits_to_keep=logits_to_keep)


def make_model(family: str, vocab_size: int) -> nn.Module:
    if family == "gpt":
        return tiny_gpt(0, vocab_size=vocab_size, block_size=160)
    return tiny_llama(0, vocab_size=vocab_size, max_position_embeddings=160, tie_word_embeddings=False)


def run_turns(model: nn.Module, tokenizer, reuse: bool, **kw) -> tuple[list[str], list[dict]]:  # noqa: ANN001
    """Chat over LINES; returns the replies and, per turn, the prompt, the first forward's size and counters."""
    counting = CountingLM(model)
    kw = {
        "template": "chatml",
        "system": "Be brief.",
        "temperature": 0,
        "max_new_tokens": 6,
        "context_tokens": 100,
        **kw,
    }
    session = ChatSession(counting, tokenizer, reuse_cache=reuse, **kw)
    turns: list[dict] = []

    def send(text: str, on_text=None) -> str:  # noqa: ANN001
        counting.calls.clear()
        cached_before = list(session._cached_ids)
        reply = ChatSession.send(session, text, on_text=on_text)
        turns.append(
            {
                "prompt": session.last_prompt_ids,
                "cached_before": cached_before,
                "first_forward": counting.calls[0],
                "forwards": len(counting.calls),
                "prefill": session.last_prefill_tokens,
                "reused": session.last_reused_tokens,
                "dropped": session.dropped_turns,
                "generated": session.last_generated,
                "reply_ids": session.last_reply_ids,
            }
        )
        return reply

    session.send = send  # type: ignore[method-assign]
    out = io.StringIO()
    run_chat(session, LINES, out=out, err=io.StringIO())
    return out.getvalue().splitlines(), turns


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_reuse_gives_the_same_replies_and_prefills_only_new_tokens(family: str, tokenizer) -> None:
    model = make_model(family, tokenizer.vocab_size)
    replies, turns = run_turns(model, tokenizer, reuse=True)
    ref_replies, ref_turns = run_turns(model, tokenizer, reuse=False)
    assert [t["reply_ids"] for t in turns] == [t["reply_ids"] for t in ref_turns]  # token for token (greedy)
    assert replies == ref_replies and len(turns) == len(LINES) - 1
    assert [t["prompt"] for t in turns] == [t["prompt"] for t in ref_turns]
    assert any(t["dropped"] for t in turns), "the context never filled: the test does not exercise dropping"

    for t in ref_turns:  # re-prefill: the whole prompt every turn
        assert t["first_forward"] == t["prefill"] == len(t["prompt"])
    for i, t in enumerate(turns):
        # The first forward of a turn runs exactly the uncached part of the prompt; each later forward one token.
        lcp = common_prefix_len(t["cached_before"], t["prompt"])
        assert t["first_forward"] == t["prefill"] == len(t["prompt"]) - t["reused"]
        assert t["reused"] == min(lcp, len(t["prompt"]) - 1)
        assert t["forwards"] == t["generated"]  # prefill + one forward per token the caller asked for
        prev = turns[i - 1] if i else None
        if i == 0 or i == 3:  # first turn, and the turn after /reset: nothing cached
            assert t["cached_before"] == [] and t["prefill"] == len(t["prompt"])
        elif not t["dropped"] and not prev["dropped"]:
            # Same history as last turn plus one exchange: the whole previous prompt comes from the cache, so
            # only the reply's end, the new user message and the assistant header are prefilled.
            assert t["reused"] >= len(prev["prompt"])
            assert t["prefill"] <= len(t["prompt"]) - len(prev["prompt"])
        elif t["dropped"] != prev["dropped"]:  # a turn left the window: the prompt changes after the system part
            system = len(tokenizer.encode("<|im_start|>system\nBe brief.<|im_end|>\n"))
            assert system <= t["reused"] < len(prev["prompt"])  # only the common part is trusted
            assert t["prompt"][t["reused"]] != t["cached_before"][t["reused"]]
    assert sum(t["prefill"] for t in turns) < sum(t["prefill"] for t in ref_turns)


def test_seeded_sampling_is_the_same_with_reuse(tokenizer) -> None:
    model = make_model("gpt", tokenizer.vocab_size)
    kw = {"temperature": 1.0, "top_k": 50, "top_p": 0.95, "seed": 3, "context_tokens": 160}
    replies, turns = run_turns(model, tokenizer, reuse=True, **kw)
    ref_replies, ref_turns = run_turns(model, tokenizer, reuse=False, **kw)
    assert [t["reply_ids"] for t in turns] == [t["reply_ids"] for t in ref_turns]  # the same random draws
    assert replies == ref_replies
    assert turns[1]["reused"] > 0


def test_penalties_and_min_p_are_the_same_with_reuse(tokenizer) -> None:
    """Penalties see the whole prompt + reply in both paths, so the replies match; and they change the replies."""
    model = make_model("llama", tokenizer.vocab_size)
    kw = {"temperature": 0.8, "seed": 5, "context_tokens": 160, "max_new_tokens": 12, "min_p": 0.05}
    penal = {"repetition_penalty": 3.0, "presence_penalty": 2.0, "frequency_penalty": 1.0}
    replies, turns = run_turns(model, tokenizer, reuse=True, **kw, **penal)
    ref_replies, ref_turns = run_turns(model, tokenizer, reuse=False, **kw, **penal)
    assert [t["reply_ids"] for t in turns] == [t["reply_ids"] for t in ref_turns] and replies == ref_replies
    plain, _ = run_turns(model, tokenizer, reuse=True, **kw)
    assert plain != replies


def test_cache_grows_and_survives_an_interrupted_forward(tokenizer) -> None:
    model = make_model("llama", tokenizer.vocab_size)
    session = ChatSession(model, tokenizer, template="chatml", temperature=0, max_new_tokens=4, context_tokens=160)
    reference = ChatSession(
        model, tokenizer, template="chatml", temperature=0, max_new_tokens=4, context_tokens=160, reuse_cache=False
    )
    session.send("hello there")
    first_capacity = session._cache.max_len
    assert first_capacity == len(session.last_prompt_ids) + 4  # sized to the need, not to the whole context
    reference.send("hello there")
    for text in ("how are you today, I am fine", "what is new"):
        assert session.send(text) == reference.send(text)
    assert session._cache.max_len > first_capacity  # grown, with the cached prefix copied over
    assert session.last_reused_tokens > 0
    session._cache.advance(1)  # as if Ctrl-C hit between a forward's cache write and the bookkeeping
    assert session.send("bye") == reference.send("bye")
    assert session.last_reused_tokens == 0  # the inconsistent cache was dropped, not trusted


def test_hooked_models_re_prefill(tokenizer) -> None:
    model = make_model("gpt", tokenizer.vocab_size)
    handle = model.register_forward_pre_hook(lambda module, args: None)  # e.g. prompt tuning's pre-hook
    try:
        session = ChatSession(model, tokenizer, template="chatml", temperature=0, max_new_tokens=3)
        assert not session.reuses_cache
        session.send("hello")
        session.send("how are you")
        assert session.last_reused_tokens == 0 and session.last_prefill_tokens == len(session.last_prompt_ids)
    finally:
        handle.remove()


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_prefix_tuned_models_reuse_the_cache(family: str, tokenizer) -> None:
    """Prefix tuning's hook only shifts positions by P, so reuse stays exact (and is used)."""
    from llmlab.peft import PrefixConfig, get_peft_model

    model = get_peft_model(
        make_model(family, tokenizer.vocab_size), PrefixConfig(num_virtual_tokens=4, prefix_init_std=1.0)
    )
    kw = dict(template="chatml", temperature=0, max_new_tokens=5, context_tokens=100)
    session, reference = ChatSession(model, tokenizer, **kw), ChatSession(model, tokenizer, reuse_cache=False, **kw)
    assert session.reuses_cache and session.context_tokens == 100
    for text in ("hello there", "how are you", "what is new today"):
        assert session.send(text) == reference.send(text)
        assert session.last_reply_ids == reference.last_reply_ids
    assert session.last_reused_tokens > 0


def test_kv_cache_crop_keeps_a_prefix() -> None:
    model = tiny_gpt(0, vocab_size=50)
    ids = torch.randint(0, 50, (1, 12))
    other = torch.randint(0, 50, (1, 5))
    cache = model.make_kv_cache(1, 32)
    with torch.no_grad():
        model(ids, kv_cache=cache)
        cache.crop(7)  # keep ids[:, :7], forget the rest
        reused = model(other, kv_cache=cache).logits  # (1, 5, V)
        fresh = model(torch.cat([ids[:, :7], other], dim=1)).logits[:, 7:]
    assert cache.seq_len == 12
    torch.testing.assert_close(reused, fresh, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cannot crop the KV cache to 13 tokens"):
        cache.crop(13)
    with pytest.raises(ValueError, match="use 0..12"):
        cache.crop(-1)
