"""Per-part time of one decode step (SmolLM2 fp32, batch 1, 64 cached tokens): eager vs compiled fast path.

python benchmarks/fast_profile.py 2      # threads; prints grouped eager op times, then the top compiled kernels
"""
# ruff: noqa: E402, E501  (a profiling script: thread count and Inductor options are set before the imports)

import collections
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
import torch._inductor.config as ic

ic.cpp.enable_kernel_profile = True
from torch.profiler import ProfilerActivity, profile

from llmlab.generate.fast import FastDecoder
from llmlab.models.smollm2 import load_smollm2

m = load_smollm2()
ids = torch.randint(3, 49152, (1, 64), generator=torch.Generator().manual_seed(0))
STEPS = 8


def groups(events, rules):
    acc = collections.Counter()
    for e in events:
        name = e.key
        t = e.self_cpu_time_total / STEPS / 1e3
        for label, keys in rules:
            if any(k in name for k in keys):
                acc[label] += t
                break
        else:
            acc["other: " + name[:40]] += t
    return acc


with torch.inference_mode():
    cache = m.make_kv_cache(1, 256)
    m(ids, kv_cache=cache, logits_to_keep=1)
    nxt = ids[:, -1:]
    for _ in range(3):
        m(nxt, kv_cache=cache, logits_to_keep=1)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(STEPS):
            m(nxt, kv_cache=cache, logits_to_keep=1)
    wall = (time.perf_counter() - t) / STEPS * 1e3
    ev = prof.key_averages()
    rules = [
        ("matmul (linear)", ["aten::addmm", "aten::mm", "aten::linear", "aten::matmul"]),
        ("attention (sdpa)", ["scaled_dot_product", "_flash_attention"]),
        ("rmsnorm ops", ["aten::rsqrt", "aten::pow", "aten::mean"]),
        (
            "rope/elementwise",
            [
                "aten::mul",
                "aten::add",
                "aten::cat",
                "aten::neg",
                "aten::cos",
                "aten::sin",
                "aten::silu",
                "aten::to",
                "aten::_to_copy",
                "aten::copy_",
            ],
        ),
        (
            "kv cache / views",
            [
                "aten::slice",
                "aten::view",
                "aten::transpose",
                "aten::index",
                "aten::select",
                "aten::expand",
                "aten::reshape",
                "aten::unsqueeze",
                "aten::empty",
                "aten::as_strided",
                "aten::contiguous",
                "aten::clone",
                "aten::split",
                "aten::chunk",
                "aten::t",
                "aten::arange",
            ],
        ),
        ("embedding", ["aten::embedding"]),
    ]
    g = groups(ev, rules)
    total_ops = sum(g.values())
    print(
        f"EAGER step wall {wall:.2f} ms; op self-time sum {total_ops:.2f} ms; python/dispatch overhead ~ {wall - total_ops:.2f} ms"
    )
    for k, v in g.most_common(12):
        print(f"  {k:40s} {v:7.2f} ms")
    d = FastDecoder(m)
    t0 = time.perf_counter()
    d.generate(ids, 3)
    print(f"compile {time.perf_counter() - t0:.1f}s")
    lg, c, s = d.prefill(ids, 64)
    for i in range(3):
        d.step(nxt, s + i, c)
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(STEPS):
            d.step(nxt, s + 3 + i, c)
    wall = (time.perf_counter() - t) / STEPS * 1e3
    ev = prof.key_averages()
    for e in sorted(ev, key=lambda e: -e.self_cpu_time_total)[:15]:
        print(f"   {e.key[:70]:70s} {e.self_cpu_time_total / STEPS / 1e3:7.3f} ms x{e.count // STEPS}")
    t = time.perf_counter()
    for i in range(STEPS):
        d.step(nxt, s + 3 + STEPS + i, c)
    print(
        f"COMPILED step wall (no profiler) {(time.perf_counter() - t) / STEPS * 1e3:.2f} ms; with profiler {wall:.2f} ms"
    )
    t = time.perf_counter()
    for _ in range(STEPS):
        m(nxt, kv_cache=cache, logits_to_keep=1)
        cache.crop(64 + 3)
    print(f"EAGER step wall again {(time.perf_counter() - t) / STEPS * 1e3:.2f} ms")
