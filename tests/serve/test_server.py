"""`llmlab serve` end to end: a live uvicorn server on a loopback port, driven by the official `openai` client.

A tiny random Llama saved as a folder (BPE tokenizer, ChatML template) stands in for a real model: replies are
gibberish, but greedy decoding is deterministic, so the server must reproduce `llmlab generate` exactly and give
the same texts whether 8 requests arrive together (continuous batching) or one after another.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from cli_helpers import run_cli
from serve_helpers import live_server, save_tiny_model

PROMPTS = ["Hello there", "How are you?", "What is new", "你好", "Nothing much", "I am fine", "What", "Hello"]
USER = [{"role": "user", "content": "Hello there, how are you?"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("serve") / "tiny")


@pytest.fixture(scope="module")
def server(model_dir: Path):
    with live_server(model_dir, max_batch=4, max_queue=32) as live:
        yield live


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def record_batch_sizes(engine) -> list[int]:  # noqa: ANN001
    """Record how many requests run in each engine step (instance patch, undone by the caller)."""
    sizes: list[int] = []
    step = engine.step

    def counting_step() -> list:
        events = step()
        sizes.append(engine.num_running + sum(e.finish_reason is not None for e in events))
        return events

    engine.step = counting_step
    return sizes


def test_health_models_and_chat_sync_and_stream(server, client: openai.OpenAI) -> None:
    health = httpx.get(server.url + "/health").json()
    assert health == {"status": "ok", "model": "tiny", "active": 0, "max_queue": 32, "max_batch": 4}
    assert [m.id for m in client.models.list().data] == ["tiny"]
    reply = client.chat.completions.create(model="tiny", messages=USER, max_tokens=12, temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens <= 12 and reply.usage.prompt_tokens > 5
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    chunks = list(
        client.chat.completions.create(
            model="tiny",
            messages=USER,
            max_tokens=12,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content  # streamed == whole, greedy
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == choice.finish_reason
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == reply.usage.completion_tokens


def test_sse_framing_ends_with_done(server) -> None:
    body = {"messages": USER, "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line.startswith("data:")]
    assert lines[-1] == "data: [DONE]"
    assert all(json.loads(line[5:])["object"] == "chat.completion.chunk" for line in lines[:-1])


def test_completions_match_llmlab_generate(model_dir: Path, client: openai.OpenAI, capsys) -> None:  # noqa: ANN001
    for prompt in ("Hello there", "你好"):
        code, out, err = run_cli(
            ["generate", "-c", str(model_dir), "-p", prompt, "-n", "15", "--temperature", "0"], capsys
        )
        assert code == 0, err
        got = client.completions.create(model="tiny", prompt=prompt, max_tokens=15, temperature=0, echo=True)
        assert got.choices[0].text == out.removesuffix("\n")
        streamed = client.completions.create(model="tiny", prompt=prompt, max_tokens=15, temperature=0, stream=True)
        assert prompt + "".join(c.choices[0].text for c in streamed) == got.choices[0].text


def test_chat_matches_llmlab_generate_chat(model_dir: Path, client: openai.OpenAI, capsys) -> None:  # noqa: ANN001
    code, out, err = run_cli(
        [
            "generate",
            "-c",
            str(model_dir),
            "--chat",
            "--system",
            "Be brief.",
            "-p",
            "Hello",
            "-n",
            "20",
            "--temperature",
            "0",
        ],
        capsys,
    )
    assert code == 0, err
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
    got = client.chat.completions.create(model="tiny", messages=messages, max_tokens=20, temperature=0)
    assert got.choices[0].message.content == out.removesuffix("\n")


def test_eight_concurrent_requests_equal_eight_sequential(server, client: openai.OpenAI) -> None:
    def ask(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, temperature=0)
        return reply.choices[0].message.content

    sequential = [ask(p) for p in PROMPTS]
    engine = server.state.runner.engine
    sizes = record_batch_sizes(engine)
    try:
        with ThreadPoolExecutor(8) as pool:
            concurrent = list(pool.map(ask, PROMPTS))
    finally:
        del engine.step
    assert concurrent == sequential
    assert len(set(sequential)) >= 4  # the prompts give different replies
    assert max(sizes) > 1  # requests shared decode steps


def test_completions_prompt_list_n_logprobs_and_stop(client: openai.OpenAI) -> None:
    got = client.completions.create(
        model="tiny", prompt=["Hello", "What"], max_tokens=6, temperature=0, n=2, logprobs=2
    )
    assert [c.index for c in got.choices] == [0, 1, 2, 3]
    assert got.choices[0].text == got.choices[1].text  # greedy: both choices of a prompt agree
    logprobs = got.choices[2].logprobs
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs)
    assert all(lp <= 0 for lp in logprobs.token_logprobs)
    for top, lp in zip(logprobs.top_logprobs, logprobs.token_logprobs, strict=True):
        assert 1 <= len(top) <= 2 and all(v <= lp + 1e-5 for v in top.values())  # greedy: the chosen is the top
    full = got.choices[0].text
    stop = full[3:5]
    cut = client.completions.create(model="tiny", prompt="Hello", max_tokens=6, temperature=0, stop=[stop])
    assert cut.choices[0].finish_reason == "stop" and cut.choices[0].text == full[: full.index(stop)]


def test_chat_n_seed_logprobs(client: openai.OpenAI) -> None:
    kw = {"model": "tiny", "messages": USER, "max_tokens": 8, "temperature": 1.0, "n": 3, "seed": 7}
    first, again = client.chat.completions.create(**kw), client.chat.completions.create(**kw)
    texts = [c.message.content for c in first.choices]
    assert texts == [c.message.content for c in again.choices]  # seeded: reproducible
    assert len(set(texts)) > 1  # choice i uses seed + i
    extra = client.chat.completions.create(
        model="tiny",
        messages=USER,
        max_tokens=5,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"top_k": 5, "min_p": 0.01, "repetition_penalty": 1.1},
    )
    content = extra.choices[0].logprobs.content
    assert len(content) == extra.usage.completion_tokens
    assert all(len(entry.top_logprobs) == 3 and entry.top_logprobs[0].logprob >= entry.logprob for entry in content)


SCHEMA = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
    "required": ["color", "ok"],
    "additionalProperties": False,
}


def check_answer(text: str) -> None:
    """`text` parses and validates against SCHEMA (written out: jsonschema is not a dependency)."""
    answer = json.loads(text)
    assert set(answer) == {"color", "ok"} and answer["color"] in ("red", "green", "blue")
    assert isinstance(answer["ok"], bool)


def test_response_format_json_schema_and_json_object(client: openai.OpenAI) -> None:
    response_format = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True}}
    for prompt in PROMPTS[:4]:
        reply = client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=60,
            temperature=1.0,
            seed=3,
            response_format=response_format,
        )
        assert reply.choices[0].finish_reason == "stop"
        check_answer(reply.choices[0].message.content)
    chunks = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=60, temperature=0, stream=True, response_format=response_format
    )
    check_answer("".join(c.choices[0].delta.content or "" for c in chunks))
    anything = client.chat.completions.create(
        model="tiny", messages=USER, max_tokens=90, temperature=0, response_format={"type": "json_object"}
    )
    if anything.choices[0].finish_reason == "stop":  # a random model may write a long object: cut by max_tokens
        assert isinstance(json.loads(anything.choices[0].message.content), dict)
    else:
        assert anything.choices[0].message.content.startswith("{")
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="tiny", messages=USER, response_format={"type": "yaml"})
    assert info.value.body["param"] == "response_format"


def test_validation_errors_name_the_field(server, client: openai.OpenAI) -> None:
    cases = [
        ({"messages": USER, "temperature": 5}, "temperature"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
        ({"messages": USER, "max_tokens": 10_000}, "max_tokens"),
        ({"messages": [{"role": "user", "content": "Hello " * 200}]}, "messages"),
        ({"messages": USER, "n": 0}, "n"),
    ]
    for body, param in cases:
        response = httpx.post(server.url + "/v1/chat/completions", json=body)
        assert response.status_code == 400, body
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == param and error["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="tiny", prompt="x", suffix="y")
    assert info.value.body["param"] == "suffix"
    missing = httpx.post(server.url + "/v1/nowhere", json={})
    assert missing.status_code == 404 and "error" in missing.json()


def test_api_key_required_on_v1_routes(model_dir: Path) -> None:
    with live_server(model_dir, max_batch=2, api_key="s3cret") as live:
        bad = openai.OpenAI(base_url=live.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError) as info:
            bad.chat.completions.create(model="tiny", messages=USER, max_tokens=2)
        assert info.value.status_code == 401 and info.value.body["code"] == "invalid_api_key"
        assert "s3cret" not in json.dumps(info.value.body)
        assert httpx.get(live.url + "/v1/models").status_code == 401  # no key at all
        good = openai.OpenAI(base_url=live.url + "/v1", api_key="s3cret", max_retries=0)
        assert good.chat.completions.create(model="tiny", messages=USER, max_tokens=2).choices
        assert httpx.get(live.url + "/health").status_code == 200  # health needs no key
        assert (
            "access-control-allow-origin" not in httpx.get(live.url + "/health", headers={"Origin": "http://x"}).headers
        )


def test_cors_only_for_the_given_origin(model_dir: Path) -> None:
    with live_server(model_dir, max_batch=1, cors_origin="http://ui.example") as live:
        headers = httpx.get(live.url + "/health", headers={"Origin": "http://ui.example"}).headers
        assert headers["access-control-allow-origin"] == "http://ui.example"
        other = httpx.get(live.url + "/health", headers={"Origin": "http://evil.example"}).headers
        assert "access-control-allow-origin" not in other


def slow_steps(engine, delay: float) -> None:  # noqa: ANN001
    """Make every engine step take at least `delay` seconds (so a test can act while a request decodes)."""
    step = engine.step

    def slow() -> list:
        time.sleep(delay)
        return step()

    engine.step = slow


def wait_for(condition, timeout: float = 5.0) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_queue_full_answers_429_with_retry_after(model_dir: Path) -> None:
    with live_server(model_dir, max_batch=1, max_queue=1) as live:
        slow_steps(live.state.runner.engine, 0.3)  # the first request holds its place >= 0.3 s a token
        # 20 tokens: the place stays taken (>= 6 s) through both refused requests even on a loaded machine;
        # leaving the `with` block disconnects, which cancels it
        body = {"messages": USER, "max_tokens": 20, "temperature": 0, "stream": True}
        with httpx.stream("POST", live.url + "/v1/chat/completions", json=body) as first:
            next(first.iter_lines())  # the first request holds the only place
            busy = httpx.post(live.url + "/v1/chat/completions", json={**body, "stream": False})
            assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
            error = busy.json()["error"]
            assert error["type"] == "rate_limit_error" and set(error) == {"message", "type", "param", "code"}
            client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.RateLimitError):
                client.completions.create(model="tiny", prompt="Hello", max_tokens=2)
        assert wait_for(lambda: live.state.runner.active == 0)
        assert httpx.post(live.url + "/v1/completions", json={"prompt": "Hi", "max_tokens": 2}).status_code == 200


def test_disconnect_cancels_the_sequence(model_dir: Path) -> None:
    with live_server(model_dir, max_batch=2) as live:
        runner = live.state.runner
        engine = runner.engine
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)
        replies = {p: client.completions.create(model="tiny", prompt=p, max_tokens=80, temperature=0) for p in PROMPTS}
        prompt = max(replies, key=lambda p: replies[p].usage.completion_tokens)
        full = replies[prompt].usage.completion_tokens
        assert full >= 30  # a long greedy reply: cancelling it early is visible
        tokens = record_batch_sizes(engine)  # one entry per step: a running request decodes one token a step
        slow_steps(engine, 0.05)
        body = {"prompt": prompt, "max_tokens": 80, "temperature": 0, "stream": True}
        with httpx.stream("POST", live.url + "/v1/completions", json=body) as response:
            lines = response.iter_lines()
            while not next(lines).startswith("data:"):
                pass
        assert wait_for(lambda: runner.active == 0 and engine.num_running == 0, timeout=2.0)
        assert len(tokens) < full / 2  # stopped long before the reply was done
        # not streamed: the client gives up (timeout) and the server notices the closed connection
        tokens.clear()
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(live.url + "/v1/completions", json={**body, "stream": False}, timeout=0.4)
        assert wait_for(lambda: runner.active == 0 and engine.num_running == 0, timeout=2.0)
        assert len(tokens) < full / 2


def test_serve_cli_refuses_bad_options_before_loading(capsys) -> None:  # noqa: ANN001
    code, _, err = run_cli(["serve", "--max-batch", "8", "--max-queue", "2", "-m", "nowhere"], capsys)
    assert code == 2 and "--max-queue" in err
    code, _, err = run_cli(["serve", "-m", "/no/such/model"], capsys)
    assert code == 2 and "/no/such/model" in err


def test_db_option_serves_the_conversation_store_across_restarts(model_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite"
    with live_server(model_dir, max_batch=2, db=db, api_key="k") as live:
        auth = {"Authorization": "Bearer k"}
        assert httpx.get(live.url + "/api/conversations").status_code == 401  # the key guards /api too
        made = httpx.post(live.url + "/api/conversations", json={"title": "t"}, headers=auth).json()
        url = f"{live.url}/api/conversations/{made['id']}/messages"
        with httpx.stream("POST", url, json={"content": "Hello there", "temperature": 0}, headers=auth) as response:
            events = [json.loads(line[5:]) for line in response.iter_lines() if line.startswith("data:")]
        assert events[-1]["done"] is True
        reply = "".join(e.get("delta", "") for e in events)
        expected = "".join(asyncio.run(_collect_reply(live.state, [{"role": "user", "content": "Hello there"}])))
        assert reply.strip() == expected.strip()  # the store's reply is the engine's greedy chat reply
    with live_server(model_dir, max_batch=2, db=db, api_key="k") as live:
        stored = httpx.get(f"{live.url}/api/conversations/{made['id']}", headers={"Authorization": "Bearer k"}).json()
        assert [m["role"] for m in stored["messages"]] == ["user", "assistant"]


async def _collect_reply(state, messages) -> list[str]:  # noqa: ANN001
    from llmlab.serve.choices import complete_text, count_chat_tokens

    assert count_chat_tokens(state, messages) > 3
    return [d async for d in complete_text(state, messages, temperature=0, max_tokens=64)]


@pytest.mark.slow
def test_smollm2_through_the_server_equals_llmlab_generate(smollm2_gguf, capsys) -> None:  # noqa: ANN001
    """The packaged SmolLM2-135M-Instruct: greedy chat replies through the server (4 at once, continuous batching)
    are `llmlab generate --chat`'s, token for token."""
    questions = ["What is 2+2?", "Name a colour.", "Say hello in French.", "What is the capital of Italy?"]
    expected = []
    for question in questions:
        code, out, err = run_cli(["generate", "--chat", "-p", question, "-n", "16", "--temperature", "0"], capsys)
        assert code == 0, err
        expected.append(out.removesuffix("\n"))
    with live_server(None, max_batch=4) as live:
        client = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)

        def ask(question: str) -> str:
            messages = [{"role": "user", "content": question}]
            reply = client.chat.completions.create(model="m", messages=messages, max_tokens=16, temperature=0)
            return reply.choices[0].message.content

        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(ask, questions)) == expected
    assert len(set(expected)) == 4 and all(expected)


def test_a_failure_mid_stream_is_an_error_event_and_the_server_goes_on(model_dir: Path) -> None:
    with live_server(model_dir, max_batch=2) as live:
        engine = live.state.runner.engine
        step, calls = engine.step, []

        def failing_step() -> list:
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("boom")
            return step()

        engine.step = failing_step
        body = {"prompt": "Hello there", "max_tokens": 20, "temperature": 0, "stream": True}
        with httpx.stream("POST", live.url + "/v1/completions", json=body) as response:
            lines = [line[5:].strip() for line in response.iter_lines() if line.startswith("data:")]
        assert lines[-1] == "[DONE]" and "boom" in json.loads(lines[-2])["error"]["message"]
        assert live.state.runner.active == 0 and engine.num_running == 0
        again = httpx.post(live.url + "/v1/completions", json={**body, "stream": False})
        assert again.status_code == 200 and again.json()["choices"][0]["text"]
