"""Serving throughput of SmolLM2-135M-Instruct: continuous batching vs one request at a time vs `transformers`.

Three parts, each optional (`--parts engine,http,structured`):

1. `engine`: the same R requests (varied prompts, greedy, EOS ignored, a fixed per-request budget of new
   tokens that varies between requests so that sequences leave the batch at different steps) through
   - `llmlab.serve.Engine(max_batch=B)` (continuous batching: all R submitted at once, `run_until_done`),
   - `llmlab.generate.generate` once per request (one at a time),
   - `transformers` `generate()` looping over the requests, on a HF folder written by `llmlab.models.save_hf`
     from the same weights.
   Reported: aggregate tokens/s = generated tokens / wall time of the whole batch of requests, and the
   ratios engine / one-at-a-time (target >= 4x) and engine / transformers. Also the fraction of requests
   whose greedy tokens are identical between the engine and one-at-a-time (float rounding of the batched
   forward may flip a near-tie; this is a check, not a target).
2. `http`: a `llmlab serve` subprocess on a free loopback port; C concurrent streaming clients (httpx async,
   `POST /v1/chat/completions` with `stream: true`, each request bounded by a timeout); completed/failed,
   p50/p99 time to first token and total latency, aggregate tokens/s (completion tokens from the streamed
   `usage` chunk, or chunks counted when the server sends none).
3. `structured`: runs `benchmarks/structured_overhead.py` when it exists and copies its JSON summary.

Method (part 1): `torch.set_num_threads(--threads)`; one untimed warm-up; then `--rounds` rounds in which
every implementation runs the whole request set once, the order rotating every round so background load
hits all alike. Medians over rounds (and the best round). The load average is recorded before and after:
on a shared machine compare ratios, not absolute figures.

    python benchmarks/serve.py                       # 32 requests x up to 64 tokens, batch 8 and 16, all parts
    python benchmarks/serve.py --quick               # 8 requests x up to 16 tokens, 1 round, 20 HTTP clients
    python benchmarks/serve.py --parts engine --threads 2 --rounds 3

Prints a summary table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from bench_utils import log

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg",
    "Write a short poem about the sea.",
    "To make a good cup of tea, first bring fresh water to a boil and warm the pot, then",
    "Explain what mitochondria do in a cell, in two sentences.",
    "Python is a programming language that lets you work quickly and integrate systems effectively;",
    "List three uses of a paperclip.",
    "On the morning of the launch, the engineers checked every valve and sensor twice before they finally gave "
    "the signal, and the whole control room held its breath as",
    "What is the capital of France?",
    "A balanced diet includes vegetables, fruit, whole grains and protein, because each of them",
    "Summarise the plot of Romeo and Juliet.",
    "The city council met on Tuesday to discuss the new bicycle lanes, which residents have said",
    "Give me a recipe for pancakes.",
    "In a small village at the edge of a great forest there lived an old woodcutter and his daughter,",
    "Why is the sky blue?",
    "Translate 'good morning' into French, Spanish and German.",
    "Once upon a time, a robot who wanted to learn how to paint",
]


# ---------------------------------------------------------------------------------------------- part 1: engine
def make_requests(tokenizer: Any, chat_template: Any, count: int, max_new: int) -> list[tuple[list[int], int]]:
    """`count` (prompt ids, new-token budget) pairs: chat-formatted varied prompts, budgets in [max_new/2, max_new]."""
    requests = []
    for i in range(count):
        text = PROMPTS[i % len(PROMPTS)]
        if i >= len(PROMPTS):  # make every prompt distinct
            text = f"{text} (variant {i // len(PROMPTS)})"
        ids = _chat_ids(tokenizer, chat_template, text)
        low = max(1, max_new // 2)
        budget = low + (i * 7) % (max_new - low + 1)
        requests.append((ids, budget))
    return requests


def _chat_ids(tokenizer: Any, chat_template: str | None, text: str) -> list[int]:
    """Token ids of `text` as a one-turn chat in the model's own template (plain text when it has none)."""
    from llmlab.tokenizers.chat import render_prompt

    if chat_template is None:
        return list(tokenizer.encode(text))
    return render_prompt(tokenizer, chat_template, None, [{"role": "user", "content": text}])


def run_engine(engine: Any, requests: list[tuple[list[int], int]]) -> tuple[float, list[list[int]]]:
    """(seconds, generated ids per request) with continuous batching: every request submitted at t=0.

    The engine (and its slot cache) is created once and reused across runs, as a server does.
    """
    from llmlab.config.sampling import SamplingConfig

    t0 = time.perf_counter()
    ids = [engine.submit(p, SamplingConfig(max_new_tokens=n, temperature=0.0), eos_ids=()) for p, n in requests]
    outputs = engine.run_until_done()
    return time.perf_counter() - t0, [outputs[i] for i in ids]


def run_sequential(model: Any, requests: list[tuple[list[int], int]]) -> tuple[float, list[list[int]]]:
    """(seconds, generated ids per request) with `llmlab.generate.generate`, one request after another."""
    from llmlab.config.sampling import SamplingConfig
    from llmlab.generate import generate

    outs = []
    t0 = time.perf_counter()
    for prompt, n in requests:
        ids = torch.tensor([prompt], dtype=torch.long)
        out = generate(model, ids, sampling=SamplingConfig(max_new_tokens=n, temperature=0.0), eos_token_id=None)
        outs.append(out[0, len(prompt) :].tolist())
    return time.perf_counter() - t0, outs


def run_transformers(model: Any, requests: list[tuple[list[int], int]]) -> tuple[float, list[list[int]]]:
    """(seconds, generated ids per request) with `transformers`' `generate()` looping over the requests."""
    outs = []
    t0 = time.perf_counter()
    with torch.inference_mode():
        for prompt, n in requests:
            ids = torch.tensor([prompt], dtype=torch.long)
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=n,
                min_new_tokens=n,
                do_sample=False,
                eos_token_id=None,
                pad_token_id=0,
            )
            outs.append(out[0, len(prompt) :].tolist())
    return time.perf_counter() - t0, outs


def load_transformers_copy(model: Any, folder: Path) -> Any:
    """`transformers` model loaded from a HF folder that `llmlab.models.save_hf` writes from `model`."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from llmlab.models import save_hf

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    save_hf(model, folder)
    hf = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    hf.generation_config.eos_token_id = None  # exactly n tokens
    hf.generation_config.temperature = hf.generation_config.top_p = hf.generation_config.top_k = None
    return hf


Runner = Callable[[list[tuple[list[int], int]]], tuple[float, list[list[int]]]]


def bench_engine(args: argparse.Namespace) -> dict[str, Any]:
    """Part 1: continuous batching vs one at a time vs transformers on the same requests (see the docstring)."""
    from llmlab.hub import load_for_inference
    from llmlab.serve.engine import Engine

    t = time.perf_counter()
    loaded = load_for_inference(None)
    model = loaded.model.eval()
    log(f"llmlab SmolLM2 loaded in {time.perf_counter() - t:.1f}s")
    requests = make_requests(loaded.tokenizer, loaded.chat_template, args.requests, args.new_tokens)
    runners: dict[str, Runner] = {}
    max_len = max(len(p) + n for p, n in requests)  # the slot length a server would set with --max-context
    for b in args.batch_sizes:
        engine = Engine(model, None, max_batch=b, max_len=max_len)
        runners[f"engine_b{b}"] = lambda reqs, engine=engine: run_engine(engine, reqs)
    runners["one_at_a_time"] = lambda reqs: run_sequential(model, reqs)
    with tempfile.TemporaryDirectory(prefix="llmlab-bench-hf-") as tmp:
        if not args.no_transformers:
            hf = load_transformers_copy(model, Path(tmp) / "hf")
            runners["transformers"] = lambda reqs: run_transformers(hf, reqs)
        return _time_runners(args.rounds, runners, requests)


def _time_runners(rounds: int, runners: dict[str, Runner], requests: list[tuple[list[int], int]]) -> dict[str, Any]:
    """Warm up, run interleaved rounds, and summarise tokens/s, ratios and greedy agreement."""
    total_tokens = sum(n for _, n in requests)
    names = list(runners)
    warm = [(p, min(n, 4)) for p, n in requests[:4]]
    for name in names:  # untimed warm-up on a few short requests
        t = time.perf_counter()
        runners[name](warm)
        log(f"warm-up {name}: {time.perf_counter() - t:.1f}s")
    samples: dict[str, list[float]] = {name: [] for name in names}
    outputs: dict[str, list[list[int]]] = {}
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            seconds, outs = runners[name](requests)
            assert [len(o) for o in outs] == [n for _, n in requests], name
            outputs[name] = outs
            samples[name].append(total_tokens / seconds)
            log(f"round {r + 1}/{rounds} {name:14s}: {seconds:6.1f}s, {total_tokens / seconds:7.1f} tok/s")
    tps = {n: statistics.median(s) for n, s in samples.items()}
    result: dict[str, Any] = {
        "requests": len(requests),
        "generated_tokens": total_tokens,
        "prompt_tokens_min_max": [min(len(p) for p, _ in requests), max(len(p) for p, _ in requests)],
        "tokens_per_s": tps,
        "tokens_per_s_best": {n: max(s) for n, s in samples.items()},
        "tokens_per_s_rounds": samples,
    }
    base = outputs["one_at_a_time"]
    for name in names:
        if name == "one_at_a_time":
            continue
        if name.startswith("engine"):
            result[f"{name}_vs_one_at_a_time"] = tps[name] / tps["one_at_a_time"]
            if "transformers" in tps:
                result[f"{name}_vs_transformers"] = tps[name] / tps["transformers"]
        same = sum(a == b for a, b in zip(outputs[name], base, strict=True))
        result[f"{name}_greedy_identical_to_one_at_a_time"] = f"{same}/{len(base)}"
    best = max(v for k, v in result.items() if k.endswith("_vs_one_at_a_time"))
    result["best_vs_one_at_a_time"] = best
    result["target_vs_one_at_a_time"] = 4.0
    result["meets_target"] = best >= 4.0
    return result


# ---------------------------------------------------------------------------------------------- part 2: http
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) by linear interpolation; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


async def _one_client(client: Any, url: str, index: int, max_tokens: int, timeout: float) -> dict[str, Any]:
    """One streaming chat request: {"ok", "ttft", "latency", "tokens", "error"}."""
    body = {
        "model": "default",
        "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    ttft = None
    chunks = 0
    usage_tokens = None
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    await response.aread()
                    return {"ok": False, "error": f"HTTP {response.status_code}: {response.text[:200]}"}
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("usage"):
                        usage_tokens = chunk["usage"].get("completion_tokens")
                    if any(c.get("delta", {}).get("content") for c in chunk.get("choices", [])):
                        chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - every failure is counted and reported, not raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    latency = time.perf_counter() - t0
    return {
        "ok": True,
        "ttft": ttft if ttft is not None else latency,
        "latency": latency,
        "tokens": usage_tokens if usage_tokens is not None else chunks,
    }


async def _load_test(base: str, clients: int, max_tokens: int, timeout: float) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=clients + 8, max_keepalive_connections=clients + 8)
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout), limits=limits) as client:
        t0 = time.perf_counter()
        results = await asyncio.gather(
            *[_one_client(client, f"{base}/v1/chat/completions", i, max_tokens, timeout) for i in range(clients)]
        )
        wall = time.perf_counter() - t0
    ok = [r for r in results if r["ok"]]
    errors = sorted({r["error"] for r in results if not r["ok"]})
    ttfts = [r["ttft"] for r in ok]
    latencies = [r["latency"] for r in ok]
    tokens = sum(r["tokens"] for r in ok)
    return {
        "clients": clients,
        "completed": len(ok),
        "failed": len(results) - len(ok),
        "errors": errors[:5],
        "ttft_p50_s": _percentile(ttfts, 0.5),
        "ttft_p99_s": _percentile(ttfts, 0.99),
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p99_s": _percentile(latencies, 0.99),
        "completion_tokens": tokens,
        "wall_s": wall,
        "aggregate_tokens_per_s": tokens / wall,
    }


def bench_http(args: argparse.Namespace) -> dict[str, Any]:
    """Part 2: C concurrent streaming clients against a `llmlab serve` subprocess on loopback."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "llmlab",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-batch",
        str(args.serve_batch),
        "--max-queue",
        str(max(args.clients, 64)),
        "--max-context",
        str(args.serve_context),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    env.pop("LLMLAB_API_KEY", None)
    log("starting: " + " ".join(cmd))
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        ready = _wait_ready(server, base, args.server_start_timeout)
        if ready is not None:
            return {"measured": False, "reason": ready}
        result = asyncio.run(_load_test(base, args.clients, args.http_tokens, args.client_timeout))
        result["server_max_batch"] = args.serve_batch
        result["max_tokens"] = args.http_tokens
        return {"measured": True, **result}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_ready(server: subprocess.Popen, base: str, timeout: float) -> str | None:
    """None once GET /health answers 200; else why not (the server exited, or the timeout passed)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            lines = (server.stderr.read() if server.stderr else "").splitlines()
            text = [x.strip("│╭╮╰╯─ ") for x in lines if any(c.isalnum() for c in x)]
            return f"`llmlab serve` exited with {server.returncode}: {' '.join(text[-3:])[:300]}"
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return None
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return f"`llmlab serve` not ready within {timeout:.0f}s"


# ---------------------------------------------------------------------------------------------- part 3
def bench_structured(args: argparse.Namespace) -> dict[str, Any]:
    """Part 3: the JSON summary of `benchmarks/structured_overhead.py` (the json helper's script), if present."""
    script = ROOT / "benchmarks" / "structured_overhead.py"
    if not script.exists():
        return {"measured": False, "reason": "benchmarks/structured_overhead.py does not exist in this checkout"}
    cmd = [sys.executable, str(script), "--threads", str(args.threads)]
    cmd += ["--repeats", "1", "--max-tokens", "32"] if args.quick else []
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        return {"measured": False, "reason": f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"}
    return {"measured": True, **json.loads(lines[-1])}


# ---------------------------------------------------------------------------------------------- main
def _print_table(summary: dict[str, Any]) -> None:
    engine = summary.get("engine")
    if engine:
        print(f"engine: {engine['requests']} requests, {engine['generated_tokens']} generated tokens (greedy)")
        for name, tps in engine["tokens_per_s"].items():
            extra = ""
            if f"{name}_vs_one_at_a_time" in engine:
                extra = f"  {engine[f'{name}_vs_one_at_a_time']:.2f}x one-at-a-time"
                if f"{name}_vs_transformers" in engine:
                    extra += f", {engine[f'{name}_vs_transformers']:.2f}x transformers"
            print(f"  {name:14s} {tps:8.1f} tok/s{extra}")
    http = summary.get("http")
    if http and http.get("measured"):
        print(
            f"http: {http['clients']} clients, {http['completed']} completed, {http['failed']} failed; "
            f"TTFT p50 {http['ttft_p50_s']:.2f}s p99 {http['ttft_p99_s']:.2f}s; latency p50 "
            f"{http['latency_p50_s']:.2f}s p99 {http['latency_p99_s']:.2f}s; {http['aggregate_tokens_per_s']:.1f} tok/s"
        )
    elif http:
        print(f"http: not measured ({http['reason']})")
    structured = summary.get("structured")
    if structured and not structured.get("measured"):
        print(f"structured: not measured ({structured['reason']})")
    print(
        f"threads={summary['threads']} load average before {summary['load_average_before']} "
        f"after {summary['load_average_after']}"
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", default="engine,http,structured", help="comma-separated: engine, http, structured")
    p.add_argument("--quick", action="store_true", help="8 requests x <= 16 tokens, 1 round, 20 HTTP clients")
    p.add_argument("--requests", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64, help="largest per-request budget (smallest: half)")
    p.add_argument("--batch-sizes", default="8,16", help="Engine max_batch values, comma-separated")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the issue's target: 2 cores)")
    p.add_argument("--no-transformers", action="store_true", help="skip the transformers reference")
    p.add_argument("--clients", type=int, default=100, help="concurrent streaming HTTP clients")
    p.add_argument("--http-tokens", type=int, default=32, help="max_tokens per HTTP request")
    p.add_argument("--serve-batch", type=int, default=16, help="`llmlab serve --max-batch`")
    p.add_argument("--serve-context", type=int, default=512, help="`llmlab serve --max-context` (KV slot length)")
    p.add_argument("--client-timeout", type=float, default=600.0, help="seconds before a client gives up")
    p.add_argument("--server-start-timeout", type=float, default=180.0)
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.new_tokens, args.rounds = min(args.requests, 8), min(args.new_tokens, 16), 1
        args.clients, args.http_tokens = min(args.clients, 20), min(args.http_tokens, 16)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    unknown = set(parts) - {"engine", "http", "structured"}
    if unknown:
        raise SystemExit(f"unknown part(s) {sorted(unknown)}; use engine, http, structured")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()
    summary: dict[str, Any] = {
        "benchmark": "serve",
        "model": "SmolLM2-135M-Instruct (packaged GGUF, fp32)",
        "quick": args.quick,
        "threads": args.threads,
    }
    benches = {"engine": bench_engine, "http": bench_http, "structured": bench_structured}
    for part in parts:
        summary[part] = benches[part](args)
    summary.update(
        load_average_before=load_before,
        load_average_after=os.getloadavg(),
        torch=torch.__version__,
        machine={"cpu_count": os.cpu_count(), "platform": platform.platform()},
    )
    if "engine" in parts:
        summary["engine"]["new_tokens_max"] = args.new_tokens
        summary["engine"]["rounds"] = args.rounds
    _print_table(summary)
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
