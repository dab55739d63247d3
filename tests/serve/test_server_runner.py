"""`EngineRunner` (the engine on a background thread, streamed to asyncio) and the engine's logprobs and
per-request processors; plus `llmlab serve` as a real subprocess answering on a loopback port."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import torch
from serve_helpers import free_port, save_tiny_model
from tiny_models import spread, tiny_llama

from llmlab.config.sampling import SamplingConfig
from llmlab.generate import generate
from llmlab.serve import Engine
from llmlab.serve.runner import EngineRunner, QueueFull

VOCAB = 61
PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 13]]


@pytest.fixture
def model() -> torch.nn.Module:
    return spread(tiny_llama(vocab_size=VOCAB, max_position_embeddings=32, tie_word_embeddings=False), seed=0)


def greedy(n: int) -> SamplingConfig:
    return SamplingConfig(max_new_tokens=n, temperature=0)


async def tokens_of(stream) -> list[int]:  # noqa: ANN001
    return [event.token_id async for event in stream]


def test_runner_streams_concurrent_requests_exactly(model: torch.nn.Module) -> None:
    runner = EngineRunner(Engine(model, max_batch=2), max_queue=8).start()
    try:

        async def main() -> list[list[int]]:
            return await asyncio.gather(*(tokens_of(runner.stream(p, greedy(9))) for p in PROMPTS))

        got = asyncio.run(main())
    finally:
        runner.close()
    for prompt, tokens in zip(PROMPTS, got, strict=True):
        assert tokens == generate(model, torch.tensor([prompt]), sampling=greedy(9))[0, len(prompt) :].tolist()
    assert runner.active == 0


def test_runner_refuses_beyond_max_queue_and_reports_engine_errors(model: torch.nn.Module) -> None:
    runner = EngineRunner(Engine(model, max_batch=1), max_queue=2).start()
    try:

        async def main() -> None:
            first, second = runner.stream(PROMPTS[0], greedy(5)), runner.stream(PROMPTS[1], greedy(5))
            with pytest.raises(QueueFull):
                runner.stream(PROMPTS[2], greedy(5))
            assert runner.room() == 0
            await tokens_of(first)
            await tokens_of(second)
            assert runner.room() == 2
            with pytest.raises(ValueError, match="prompt"):
                await tokens_of(runner.stream(list(range(40)), greedy(2)))  # longer than the 32-token cache
            assert runner.room() == 2

        asyncio.run(main())
    finally:
        runner.close()


def test_stopping_early_cancels_the_request(model: torch.nn.Module) -> None:
    engine = Engine(model, max_batch=1)
    runner = EngineRunner(engine, max_queue=4).start()
    try:

        async def main() -> list[int]:
            stream = runner.stream(PROMPTS[0], greedy(25))
            async for _ in stream:
                break  # the consumer leaves after one token
            await asyncio.sleep(0)
            deadline = time.monotonic() + 2
            while (runner.active or engine.num_running) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            return await tokens_of(runner.stream(PROMPTS[1], greedy(4)))  # the slot is free again

        assert len(asyncio.run(main())) == 4
        assert runner.active == 0 and engine.num_running == 0
    finally:
        runner.close()


def test_engine_logprobs_and_processors(model: torch.nn.Module) -> None:
    engine = Engine(model, max_batch=2)
    banned = 7

    def ban(input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:  # (1, T), (1, V)
        seen.append(input_ids.shape[1])
        logits = logits.clone()
        logits[:, banned] = float("-inf")
        return logits

    seen: list[int] = []
    rid = engine.submit(PROMPTS[1], greedy(6), processors=[ban], logprobs=3)
    events = [e for e in sum((engine.step() for _ in range(8)), []) if e.request_id == rid]
    assert seen == list(range(len(PROMPTS[1]), len(PROMPTS[1]) + 6))  # once per token, prompt + tokens so far
    assert banned not in [e.token_id for e in events]
    for event in events:
        assert event.logprob is not None and event.logprob <= 0 and len(event.top_logprobs) == 3
        values = [v for _, v in event.top_logprobs]
        assert values == sorted(values, reverse=True)
    plain = engine.submit(PROMPTS[1], greedy(2))
    plain_events = [e for _ in range(3) for e in engine.step() if e.request_id == plain]
    assert len(plain_events) == 2
    assert all(e.logprob is None and e.top_logprobs is None for e in plain_events)
    with pytest.raises(ValueError, match="logprobs"):
        engine.submit(PROMPTS[0], greedy(2), logprobs=21)


@pytest.mark.slow
def test_llmlab_serve_subprocess_answers_on_loopback(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "tiny")
    port = free_port()
    env = {**os.environ, "LLMLAB_API_KEY": "env-key"}
    command = [sys.executable, "-m", "llmlab", "serve", "--model", str(folder), "--port", str(port), "--max-batch", "2"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        body = {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 4}
        assert httpx.post(url + "/v1/chat/completions", json=body).status_code == 401
        ok = httpx.post(url + "/v1/chat/completions", json=body, headers={"Authorization": "Bearer env-key"})
        assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"
        assert "<" in httpx.get(url + "/").text  # the web page (or its placeholder)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "env-key" not in err  # the key is never logged


def test_a_raising_processor_fails_only_its_request(model: torch.nn.Module) -> None:
    runner = EngineRunner(Engine(model, max_batch=2), max_queue=4).start()
    calls: list[int] = []

    def breaks_on_third_call(input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("bad grammar state")
        return logits

    try:

        async def main() -> tuple[BaseException | list[int], list[int]]:
            broken = tokens_of(runner.stream(PROMPTS[0], greedy(8), processors=[breaks_on_third_call]))
            healthy = tokens_of(runner.stream(PROMPTS[1], greedy(8)))
            return await asyncio.gather(broken, healthy, return_exceptions=True)

        broken, healthy = asyncio.run(main())
    finally:
        runner.close()
    assert isinstance(broken, RuntimeError) and "bad grammar state" in str(broken)
    assert healthy == generate(model, torch.tensor([PROMPTS[1]]), sampling=greedy(8))[0, len(PROMPTS[1]) :].tolist()
    assert runner.active == 0 and runner.engine.num_running == 0
