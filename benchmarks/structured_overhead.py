"""Per-token overhead of structured output (xgrammar token masks) on SmolLM2-135M-Instruct, CPU, greedy.

For each response_format, decode the same chat prompt twice with `llmlab.generate.generate`: masked (the
`build_processor` processor, stopping at the end of the JSON document: n tokens) and unmasked (no processor,
no EOS, exactly n tokens). Both runs share the prompt, the prefill and the number of forwards, so

    overhead = (masked seconds - unmasked seconds) / unmasked seconds

is the cost of the mask per token (target < 15%). On a shared, busy machine that A/B difference is noisy, so
the masked run also times its processor calls (bitmask fill + apply + matcher update) and reports
`in_run_overhead_pct` = processor seconds / (masked seconds - processor seconds): both sides measured in the
same run under the same load. Also reported: the grammar compile times (first compile of a tokenizer's vocabulary, then
one schema, then a cached one). Runs alternate masked/unmasked and the median of `--repeats` is kept.

    PYTHONPATH=. python benchmarks/structured_overhead.py --threads 2 --repeats 3

The last line of stdout is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from bench_utils import log

from llmlab.config.sampling import SamplingConfig
from llmlab.generate import generate
from llmlab.hub import load_for_inference
from llmlab.serve import structured
from llmlab.tokenizers.chat import render_prompt

CASES = {
    "person": (
        "Give me a person as JSON with a name, an age and a list of hobbies.",
        {
            "type": "json_schema",
            "json_schema": {
                "name": "person",
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string", "maxLength": 30},
                        "age": {"type": "integer", "minimum": 0, "maximum": 130},
                        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 4},
                    },
                    "required": ["name", "age", "hobbies"],
                },
            },
        },
    ),
    "choice": (
        "Pick the color of the sky and say how sure you are from 0 to 1.",
        {
            "type": "json_schema",
            "json_schema": {
                "name": "choice",
                "schema": {
                    "type": "object",
                    "properties": {"color": {"enum": ["red", "green", "blue"]}, "confidence": {"type": "number"}},
                    "required": ["color", "confidence"],
                },
            },
        },
    ),
    "json_object": ("Describe the planet Mars as a JSON object with three keys.", {"type": "json_object"}),
}


class TimedProcessor:
    """Wraps a processor and adds up the seconds spent in it."""

    def __init__(self, inner: structured.StructuredProcessor) -> None:
        self.inner, self.seconds, self.calls = inner, 0.0, 0

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.inner(input_ids, logits)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def measure_case(model, tokenizer, prompt: list[int], response_format: dict, max_tokens: int, repeats: int) -> dict:
    """Median masked/unmasked decode times for one response_format (see the module docstring)."""
    stops = structured.default_stop_ids(tokenizer)
    ids = torch.tensor([prompt])
    masked, unmasked, in_processor, in_run = [], [], [], []
    n = 0
    text = ""
    for _ in range(repeats):
        processor = TimedProcessor(structured.build_processor(tokenizer, response_format, stop_ids=stops))
        start = time.perf_counter()
        out = generate(model, ids, max_tokens, sampling=SamplingConfig(temperature=0), eos_token_id=stops,
                       logits_processors=[processor])
        masked.append(time.perf_counter() - start)
        reply = out[0, ids.size(1) :].tolist()
        n, text = len(reply), tokenizer.decode(reply[:-1] if reply[-1] in stops else reply)
        in_processor.append(processor.seconds / processor.calls)
        in_run.append(processor.seconds / (masked[-1] - processor.seconds))
        start = time.perf_counter()
        generate(model, ids, n, sampling=SamplingConfig(temperature=0), eos_token_id=None)
        unmasked.append(time.perf_counter() - start)
    masked_s, unmasked_s = statistics.median(masked), statistics.median(unmasked)
    try:
        json.loads(text)
        parses = True
    except json.JSONDecodeError:
        parses = False
    return {
        "tokens": n,
        "parses": parses,
        "masked_ms_per_token": round(1000 * masked_s / n, 2),
        "unmasked_ms_per_token": round(1000 * unmasked_s / n, 2),
        "processor_ms_per_token": round(1000 * statistics.median(in_processor), 3),
        "overhead_pct": round(100 * (masked_s - unmasked_s) / unmasked_s, 1),
        "in_run_overhead_pct": round(100 * statistics.median(in_run), 2),
        "text": text[:120],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median kept)")
    parser.add_argument("--max-tokens", type=int, default=96, help="cap on the masked reply")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_for_inference(None, "cpu")
    model, tokenizer = loaded.model.eval(), loaded.tokenizer
    start = time.perf_counter()
    structured.compile_response_format(tokenizer, {"type": "json_object"})  # decodes the vocabulary once
    first_compile_s = time.perf_counter() - start
    start = time.perf_counter()
    structured.compile_response_format(tokenizer, CASES["person"][1])
    schema_compile_s = time.perf_counter() - start
    start = time.perf_counter()
    structured.compile_response_format(tokenizer, CASES["person"][1])
    cached_compile_s = time.perf_counter() - start
    results = {}
    for name, (question, response_format) in CASES.items():
        prompt = render_prompt(tokenizer, "chatml", None, [{"role": "user", "content": question}])
        results[name] = measure_case(model, tokenizer, prompt, response_format, args.max_tokens, args.repeats)
        log(f"{name}: {results[name]}")
    total_masked = sum(r["masked_ms_per_token"] * r["tokens"] for r in results.values())
    total_unmasked = sum(r["unmasked_ms_per_token"] * r["tokens"] for r in results.values())
    summary = {
        "benchmark": "structured_overhead",
        "model": "SmolLM2-135M-Instruct",
        "threads": args.threads,
        "repeats": args.repeats,
        "xgrammar": _xgrammar_version(),
        "first_compile_s": round(first_compile_s, 3),
        "schema_compile_s": round(schema_compile_s, 4),
        "cached_compile_s": round(cached_compile_s, 4),
        "cases": results,
        "overhead_pct": round(100 * (total_masked - total_unmasked) / total_unmasked, 1),
        "in_run_overhead_pct": round(max(r["in_run_overhead_pct"] for r in results.values()), 2),
        "target_pct": 15,
    }
    print(json.dumps(summary))


def _xgrammar_version() -> str:
    from importlib.metadata import version

    return version("xgrammar")


if __name__ == "__main__":
    main()
