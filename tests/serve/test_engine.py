"""The continuous-batching engine decodes every request as `llmlab.generate.generate` does it alone."""

from __future__ import annotations

import pytest
import torch
from tiny_models import spread, tiny_gpt, tiny_llama

from llmlab.config.sampling import SamplingConfig
from llmlab.generate import generate
from llmlab.peft import LoraConfig, PrefixConfig, get_peft_model
from llmlab.serve import Engine, TokenEvent

VOCAB = 61
CONTEXT = 32  # both tiny families: 32 positions

MODELS = {
    "llama": lambda: tiny_llama(vocab_size=VOCAB, max_position_embeddings=CONTEXT, tie_word_embeddings=False),
    "gpt": lambda: tiny_gpt(vocab_size=VOCAB),
    "gpt-rope": lambda: tiny_gpt(vocab_size=VOCAB, position="rope"),
    "gpt-alibi": lambda: tiny_gpt(vocab_size=VOCAB, position="alibi"),
    "gpt-local": lambda: tiny_gpt(vocab_size=VOCAB, position="rope", attention="local", window_size=6),
    "gpt-moe": lambda: tiny_gpt(vocab_size=VOCAB, moe_num_experts=4, moe_top_k=2),
    "llama-lora": lambda: get_peft_model(MODELS["llama"](), LoraConfig(r=2)),  # spread() makes B non-zero
}
_gen = torch.Generator().manual_seed(5)
PROMPT_LENS = (3, 9, 1, 6, 12, 2, 5, 8)
NEW_TOKENS = (10, 4, 14, 7, 9, 12, 3, 11)
PROMPTS = [torch.randint(0, VOCAB, (n,), generator=_gen).tolist() for n in PROMPT_LENS]
SUBMIT_AT = (0, 0, 0, 2, 3, 3, 6, 9)  # step at which each request arrives; later ones join a running batch


def greedy(n: int) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=n, temperature=0)


def alone(model, prompt: list[int], sampling: SamplingConfig, **kw) -> list[int]:
    return generate(model, torch.tensor([prompt]), sampling=sampling, **kw)[0, len(prompt) :].tolist()


def run_staggered(engine: Engine, requests: list[tuple[int, list[int], SamplingConfig]]) -> dict[int, list[TokenEvent]]:
    """Submit (step, prompt, sampling) requests at their steps, step until done; the events of each request index."""
    events: dict[int, list[TokenEvent]] = {}
    ids: dict[int, int] = {}
    step = 0
    while len(ids) < len(requests) or engine.has_work:
        for index, (at, prompt, sampling) in enumerate(requests):
            if at == step:
                ids[engine.submit(prompt, sampling)] = index
        for event in engine.step():
            events.setdefault(ids[event.request_id], []).append(event)
        step += 1
    return events


def record_aligns(engine: Engine) -> list[tuple[int, int]]:
    """Record every (old head, new head) of `engine.cache.align` (a smaller new head: a compaction)."""
    aligns: list[tuple[int, int]] = []
    original = engine.cache.align

    def align(new_head: int) -> None:
        aligns.append((engine.cache.head, new_head))
        original(new_head)

    engine.cache.align = align  # type: ignore[method-assign]
    return aligns


def tokens(events: list[TokenEvent]) -> list[int]:
    return [e.token_id for e in events]


@pytest.mark.parametrize("name", list(MODELS))
def test_staggered_greedy_equals_generate_alone(name: str) -> None:
    model = spread(MODELS[name](), seed=0)
    engine = Engine(model, max_batch=4)
    aligns = record_aligns(engine)
    requests = [(at, p, greedy(n)) for at, p, n in zip(SUBMIT_AT, PROMPTS, NEW_TOKENS, strict=True)]
    events = run_staggered(engine, requests)
    for index, (_, prompt, sampling) in enumerate(requests):
        expected = alone(model, prompt, sampling)
        assert tokens(events[index]) == expected, (name, index)
        assert [e.finish_reason for e in events[index]] == [None] * (len(expected) - 1) + ["length"]
    assert sum(len(set(tokens(e))) > 1 for e in events.values()) >= 6  # the replies are not constant
    assert any(new > old > 0 for old, new in aligns), "no live slot was shifted right for a longer prompt"
    assert engine.num_running == engine.num_waiting == 0


@pytest.mark.parametrize("name", ["llama", "gpt"])
def test_small_cache_compacts_and_stops_at_max_len(name: str) -> None:
    """max_len=14: the head overflows every few steps; replies stay exact and end with "length" at 15 tokens."""
    model = spread(MODELS[name](), seed=1)
    engine = Engine(model, max_batch=3, max_len=14)
    aligns = record_aligns(engine)
    requests = [
        (at, p, greedy(12))
        for at, p in zip((0, 0, 1, 2, 4), (PROMPTS[0], PROMPTS[4], PROMPTS[2], PROMPTS[3], PROMPTS[7]), strict=True)
    ]
    events = run_staggered(engine, requests)
    for index, (_, prompt, sampling) in enumerate(requests):
        expected = alone(model, prompt, sampling)
        got = events[index]
        room = 14 + 1 - len(prompt)  # the engine feeds at most max_len tokens of a sequence
        assert tokens(got) == expected[:room], (name, index)
        assert got[-1].finish_reason == "length" and len(got) == min(12, room)
    assert any(new < old for old, new in aligns), "no compaction happened"


def test_one_forward_per_step_for_all_running_requests() -> None:
    model = spread(MODELS["llama"](), seed=0)
    engine = Engine(model, max_batch=4)
    calls: list[tuple[str, int]] = []  # (kind, batch rows)

    def count(module, args, kwargs) -> None:
        kind = "decode" if "attention_mask" in kwargs else "prefill"  # a prefill runs one prompt unmasked
        calls.append((kind, args[0].shape[0]))

    model.register_forward_pre_hook(count, with_kwargs=True)
    for prompt, n in zip(PROMPTS[:6], NEW_TOKENS[:6], strict=True):
        engine.submit(prompt, greedy(n))
    steps = 0
    while engine.has_work:
        before = len(calls)
        engine.step()
        decodes = [rows for kind, rows in calls[before:] if kind == "decode"]
        assert len(decodes) == 1  # one batched forward per step ...
        steps += 1
    prefills = [rows for kind, rows in calls if kind == "prefill"]
    assert prefills == [1] * 6  # ... plus one prefill per admitted request
    assert max(rows for kind, rows in calls if kind == "decode") == 4
    assert steps < sum(NEW_TOKENS[:6]) - 6  # batching: fewer decode forwards than decoded tokens


def test_freed_slot_is_reused_by_a_later_request() -> None:
    model = spread(MODELS["gpt"](), seed=0)
    engine = Engine(model, max_batch=2)
    first = [engine.submit(PROMPTS[i], greedy(3)) for i in (0, 1)]
    engine.step()
    assert sorted(engine.slot_of(r) for r in first) == [0, 1]
    engine.run_until_done()
    assert [engine.slot_of(r) for r in first] == [None, None] and engine.num_running == 0
    late = engine.submit(PROMPTS[2], greedy(6))
    got = engine.step()
    assert engine.slot_of(late) == 0  # the lowest free slot: decode forwards stay as narrow as they can
    reply = [e.token_id for e in got] + engine.run_until_done()[late]
    assert reply == alone(model, PROMPTS[2], greedy(6))


def test_cancel_frees_the_slot_for_a_waiting_request() -> None:
    model = spread(MODELS["llama"](), seed=0)
    engine = Engine(model, max_batch=1)
    long_one = engine.submit(PROMPTS[0], greedy(20))
    waiting = engine.submit(PROMPTS[3], greedy(5))
    dropped = engine.submit(PROMPTS[5], greedy(5))
    engine.step()
    engine.step()
    assert engine.slot_of(long_one) == 0 and engine.num_waiting == 2
    assert engine.cancel(dropped) and engine.num_waiting == 1  # a waiting request
    assert engine.cancel(long_one) and engine.num_running == 0  # a running one: its slot is free at once
    assert not engine.cancel(long_one) and not engine.cancel(12345)
    outputs = engine.run_until_done()
    assert set(outputs) == {waiting}
    assert outputs[waiting] == alone(model, PROMPTS[3], greedy(5))


def test_seeded_sampling_does_not_depend_on_the_batch() -> None:
    model = spread(MODELS["llama"](), seed=0)
    sampled = SamplingConfig(max_new_tokens=12, temperature=0.9, top_k=20, top_p=0.95, repetition_penalty=1.2, seed=7)
    target = PROMPTS[1]
    runs = []
    for others in (
        [],
        [(0, PROMPTS[0], greedy(5))],
        [(0, PROMPTS[4], sampled.replace(seed=1)), (1, PROMPTS[2], greedy(9))],
    ):
        engine = Engine(model, max_batch=3)
        events = run_staggered(engine, [*others, (1, target, sampled)])
        runs.append(tokens(events[len(others)]))
    assert runs[0] == runs[1] == runs[2]
    assert runs[0] == alone(model, target, sampled)  # the same draws as generate's seeded generator
    assert runs[0] != alone(model, target, sampled.replace(seed=8))  # the seed matters


class CharDecoder:
    """Token i decodes to the letter chr(97 + i % 26)."""

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(97 + i % 26) for i in ids)


def test_eos_and_stop_strings_end_a_request_with_stop() -> None:
    model = spread(MODELS["gpt"](), seed=0)
    reference = alone(model, PROMPTS[0], greedy(14))
    eos = reference[5]
    cut = reference.index(eos) + 1
    stop = CharDecoder().decode(reference[7:9])
    engine = Engine(model, CharDecoder(), max_batch=2)
    by_eos = engine.submit(PROMPTS[0], greedy(14), eos_ids=[eos])
    by_text = engine.submit(PROMPTS[0], SamplingConfig(max_new_tokens=14, temperature=0, stop=(stop,)))
    events: dict[int, list[TokenEvent]] = {}
    while engine.has_work:
        for event in engine.step():
            events.setdefault(event.request_id, []).append(event)
    assert tokens(events[by_eos]) == reference[:cut] and events[by_eos][-1].finish_reason == "stop"
    expected = alone(
        model, PROMPTS[0], SamplingConfig(max_new_tokens=14, temperature=0, stop=(stop,)), tokenizer=CharDecoder()
    )
    assert tokens(events[by_text]) == expected and events[by_text][-1].finish_reason == "stop"
    assert len(expected) < 14


@pytest.mark.parametrize(
    ("make", "kwargs", "match"),
    [
        (lambda: tiny_gpt(vocab_size=VOCAB, attention="linear"), {}, "linear attention"),
        (lambda: tiny_gpt(vocab_size=VOCAB, causal=False), {}, "non-causal"),
        (lambda: tiny_gpt(vocab_size=VOCAB, attention="local", window_size=4, n_global_tokens=2), {}, "global tokens"),
        (lambda: tiny_gpt(vocab_size=VOCAB, cross_attention=True), {}, "decoder-only"),
        (lambda: get_peft_model(tiny_llama(vocab_size=VOCAB), PrefixConfig(num_virtual_tokens=2)), {}, "prefix tuning"),
        (lambda: torch.nn.Linear(2, 2), {}, "llmlab decoders"),
        (MODELS["gpt"], {"max_len": 33}, "max_len must be in 2..32"),
        (MODELS["gpt"], {"max_batch": 0}, "max_batch must be >= 1"),
    ],
)
def test_unservable_models_and_settings_are_refused(make, kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        Engine(make(), **kwargs)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("prompt", "sampling", "match"),
    [
        ([], None, "takes 1..32"),
        (list(range(33)), None, "takes 1..32"),
        ([3, VOCAB], None, "token ids must be in 0..60"),
        ([3], SamplingConfig(max_new_tokens=0), "max_new_tokens >= 1"),
        ([3], SamplingConfig(num_beams=2), "num_beams=1"),
        ([3], SamplingConfig(stop=("x",)), "create the Engine with a tokenizer"),
    ],
)
def test_bad_requests_are_refused_before_queueing(prompt, sampling, match: str) -> None:
    engine = Engine(MODELS["gpt"](), max_batch=2)
    with pytest.raises(ValueError, match=match) as info:
        engine.submit(prompt, sampling)
    assert "\n" not in str(info.value) and engine.num_waiting == 0


def test_requests_done_at_prefill_never_take_a_slot() -> None:
    """One new token, or a prompt filling max_len: the prefill's token is the whole reply, with "length"."""
    model = spread(MODELS["llama"](), seed=0)
    engine = Engine(model, max_batch=2, max_len=16)
    full = (PROMPTS[4] + PROMPTS[1])[:16]
    one = engine.submit(PROMPTS[0], greedy(1))
    filled = engine.submit(full, greedy(5))
    events = engine.step()
    assert events == [
        TokenEvent(one, alone(model, PROMPTS[0], greedy(1))[0], "length"),
        TokenEvent(filled, alone(model, full, greedy(1))[0], "length"),
    ]
    assert not engine.has_work and engine.cache.head == 0


def test_stale_columns_are_trimmed_so_a_long_lived_engine_does_not_slow_down():
    """After requests finish, the shared head moves back: the next decode attends over live columns only."""
    from tiny_models import tiny_llama

    from llmlab.config.sampling import SamplingConfig
    from llmlab.generate import generate
    from llmlab.serve import Engine

    model = tiny_llama(0).eval()
    engine = Engine(model, max_batch=2, max_len=model.config.max_position_embeddings)
    greedy = SamplingConfig(max_new_tokens=40, temperature=0.0)
    engine.submit(list(range(5, 30)), greedy)
    engine.run_until_done()
    stale_head = engine.cache.head
    prompt = [7, 8, 9]
    rid = engine.submit(prompt, SamplingConfig(max_new_tokens=3, temperature=0.0))
    out = engine.run_until_done()[rid]
    assert stale_head >= 60 and engine.cache.head <= len(prompt) + 3  # trimmed back to the live sequence
    alone = generate(model, torch.tensor([prompt]), 3, sampling=SamplingConfig(temperature=0.0))[0, 3:].tolist()
    assert list(out) == alone
