"""SmolLM2-135M compressed: quality, memory and speed per quantization scheme, with llama.cpp as the anchor.

Per scheme (fp32, bf16, int8, int4 g32/g64, nf4, dynamic-int8, gptq-int4, and the GGUF Q4_1/Q8_0 files
loaded quantized), in one process:
- quality (`--parts quality`): held-out perplexity on a fixed Shakespeare passage (`llmlab.eval.perplexity`,
  disjoint 256-token windows) and its change vs fp32; with `--harness`, accuracy on the built-in
  `sentiment_en` task (`--limit` documents);
- memory: bytes of the parameters and buffers (tensors shared by tied layers counted once) and the RSS
  growth while the model was built;
- speed (`--parts speed`): llmlab's compiled decoder (`llmlab.generate.fast.FastDecoder`: static KV cache,
  fused projections, torch.compile'd step; its fused/unpacked weight copies: `fast_path_extra_bytes`) at
  batch 1 and 8: decode tokens/s over `--new-tokens` steps and
  prompt tokens/s of a `--prompt-tokens` prompt; the warm-up (compile) time is reported separately; the eager
  `stream_generate` loop at batch 1 for reference;
- llama.cpp (`--parts llama_cpp`): `llama-bench -t THREADS -p 64 -n 64` on the same weights in GGUF: F32 and
  Q8_0 made by `llmlab convert --dtype f32|q8_0`, and the packaged Q4_1 file; then ratios llmlab / llama.cpp
  (fp32 vs F32, int8-like vs Q8_0, int4-like vs Q4_1). Skipped (said so in the JSON) without the binary.

    python benchmarks/compress.py --schemes fp32,int8,int4-g32 --threads 2          # everything for 3 schemes
    python benchmarks/compress.py --parts speed,llama_cpp --schemes fp32 --llama-bench PATH

The machine should be idle: compare ratios measured in the same run. Prints a table, then ONE JSON object on
the last line of stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from bench_utils import _malloc_trim, log
from llama_cpp import find_binary, llama_bench

SCHEMES = ("fp32", "bf16", "int8", "int4-g32", "int4-g64", "nf4", "dynamic-int8", "gptq-int4", "gguf-q4_1", "gguf-q8_0")
ANCHOR = {"fp32": "F32", "bf16": "F32", "int8": "Q8_0", "dynamic-int8": "Q8_0", "gguf-q8_0": "Q8_0"}
PARTS = ("quality", "speed", "llama_cpp")


def shakespeare_text(chars: int, skip: int = 20000) -> str:
    """A fixed held-out passage: `chars` characters of the first Gutenberg play, after its front matter."""
    from llmlab.data.sources import _shakespeare_files

    text = _shakespeare_files()[0].read_text(encoding="utf-8", errors="replace")
    return text[skip : skip + chars]


def tensor_bytes(model: torch.nn.Module) -> int:
    """Bytes of every parameter and buffer, tensors shared by several modules (tied embeddings) counted once."""
    seen = {(t.data_ptr(), t.numel()): t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())}
    return sum(seen.values())


def _rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def convert_gguf(dtype: str, work: Path) -> Path:
    """SmolLM2 as a GGUF file of `dtype` (f32 | q8_0), written once by `llmlab convert` into `work`."""
    path = work / f"smollm2-{dtype}.gguf"
    if not path.exists():
        from llmlab.models.smollm2 import smollm2_gguf_path

        cmd = [sys.executable, "-m", "llmlab", "convert", "--from", str(smollm2_gguf_path()), "--to", str(path)]
        cmd += ["--dtype", dtype]
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return path


def build(scheme: str, base: torch.nn.Module, tokenizer: Any, work: Path) -> torch.nn.Module:
    """The model for `scheme` (base is the fp32 SmolLM2; quantized schemes via `llmlab.compress`)."""
    if scheme == "fp32":
        return copy.deepcopy(base)
    if scheme == "bf16":
        return copy.deepcopy(base).to(torch.bfloat16)
    if scheme.startswith("gguf-"):
        from llmlab.compress.quant.gguf import load_gguf_quantized
        from llmlab.models.smollm2 import smollm2_gguf_path

        path = smollm2_gguf_path() if scheme == "gguf-q4_1" else convert_gguf("q8_0", work)
        return load_gguf_quantized(path).eval()
    from llmlab.compress import quantize

    if scheme.startswith("int4-g"):
        return quantize(copy.deepcopy(base), "int4", group_size=int(scheme.removeprefix("int4-g")))
    calibration = None
    if scheme == "gptq-int4":
        ids = tokenizer.encode(shakespeare_text(60000, skip=200000))
        calibration = [torch.tensor([ids[i : i + 256]]) for i in range(0, 16 * 256, 256)]
    return quantize(copy.deepcopy(base), scheme, calibration=calibration)


def quality(model: torch.nn.Module, tokenizer: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Held-out perplexity (and harness accuracy with --harness)."""
    from llmlab.eval.perplexity import evaluate_perplexity

    text = shakespeare_text(args.ppl_chars)
    out: dict[str, Any] = {}
    with torch.inference_mode():
        ppl = evaluate_perplexity(model, tokenizer, text, block_size=256, stride=256, batch_size=4)
    out["perplexity"] = ppl["perplexity"]
    out["tokens_scored"] = ppl["tokens_scored"]
    if args.harness:
        from llmlab.eval.harness import ModelLM, evaluate, load_task

        res = evaluate(ModelLM(model, tokenizer, batch_size=8), [load_task("sentiment_en")], limit=args.limit)
        out["sentiment_en_acc"] = res["sentiment_en"].get("acc")
    return out


def _decode_round(decoder: Any, ids: torch.Tensor, n: int) -> tuple[float, float]:
    """(prompt seconds, seconds of the n - 1 one-token steps) of one greedy run of `n` new tokens."""
    t = time.perf_counter()
    logits, cache, slot = decoder.prefill(ids, n)
    prompt_s = time.perf_counter() - t
    t = time.perf_counter()
    for i in range(n - 1):
        logits = decoder.step(logits.argmax(-1, keepdim=True), slot + i, cache)
    return prompt_s, time.perf_counter() - t


def speed(model: torch.nn.Module, args: argparse.Namespace) -> dict[str, Any]:
    """Compiled decoder: warm-up seconds, decode and prompt tokens/s per batch size; eager decode at batch 1."""
    from llmlab.generate import stream_generate
    from llmlab.generate.fast import FastDecoder

    decoder = FastDecoder(model)
    own = {t.data_ptr() for t in (*model.parameters(), *model.buffers())}
    extra = [t for t in (*decoder.net.parameters(), *decoder.net.buffers()) if t.data_ptr() not in own]
    out: dict[str, Any] = {"fast_path_extra_bytes": sum(t.numel() * t.element_size() for t in extra)}  # fused copies
    n, p = args.new_tokens, args.prompt_tokens
    for b in args.batch_sizes:
        ids = torch.randint(3, model.config.vocab_size, (b, p), generator=torch.Generator().manual_seed(b))
        t = time.perf_counter()
        _decode_round(decoder, ids, n)  # untimed: compiles the (batch, max_len) step on exactly the timed path
        out[f"warmup_s_b{b}"] = round(time.perf_counter() - t, 1)
        prompt_s, decode_s = zip(*(_decode_round(decoder, ids, n) for _ in range(args.rounds)), strict=True)
        out[f"decode_tok_s_b{b}"] = b * (n - 1) / statistics.median(decode_s)
        out[f"prompt_tok_s_b{b}"] = b * p / statistics.median(prompt_s)
    if args.eager:
        ids = torch.randint(3, model.config.vocab_size, (1, p), generator=torch.Generator().manual_seed(1))
        stamps = [time.perf_counter()]
        for _ in stream_generate(model, ids, n, temperature=0.0, eos_token_id=None):
            stamps.append(time.perf_counter())
        out["eager_prompt_tok_s_b1"] = p / (stamps[1] - stamps[0])
        out["eager_decode_tok_s_b1"] = (n - 1) / (stamps[-1] - stamps[1])
    return out


def anchors(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """llama-bench on F32 / Q8_0 (converted) / Q4_1 (packaged): {name: figures} or {"skipped": reason}."""
    from llmlab.models.smollm2 import smollm2_gguf_path

    binary = find_binary("llama-bench", args.llama_bench, "LLAMA_BENCH")
    if binary is None:
        return {"skipped": "llama-bench not found (pass --llama-bench PATH or set LLAMA_BENCH)"}
    files = {"F32": convert_gguf("f32", work), "Q8_0": convert_gguf("q8_0", work), "Q4_1": smollm2_gguf_path()}
    out: dict[str, Any] = {"binary": str(binary)}
    for name, path in files.items():
        log(f"llama-bench {name} ...")
        out[name] = llama_bench(binary, path, threads=args.threads, prompt=args.prompt_tokens, gen=args.new_tokens)
        out[name]["file_bytes"] = path.stat().st_size
    return out


def ratios(rows: dict[str, dict[str, Any]], anchor: dict[str, Any]) -> None:
    """Add llmlab / llama.cpp ratios (decode and prompt at batch 1) to every row with an anchor."""
    if "skipped" in anchor:
        return
    for scheme, row in rows.items():
        ref = anchor.get(ANCHOR.get(scheme, "Q4_1"))
        if not ref or "decode_tok_s_b1" not in row:
            continue
        row["anchor"] = ANCHOR.get(scheme, "Q4_1")
        row["decode_ratio_vs_llama_cpp"] = row["decode_tok_s_b1"] / ref["decode_tokens_per_s"]
        row["prompt_ratio_vs_llama_cpp"] = row["prompt_tok_s_b1"] / ref["prompt_tokens_per_s"]
        row["bytes_vs_gguf_file"] = row["model_bytes"] / ref["file_bytes"]


def run_scheme(scheme: str, base: Any, tokenizer: Any, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Build one scheme and measure the selected parts; an unavailable scheme gives {"error": reason}."""
    _malloc_trim()
    rss = _rss()
    t = time.perf_counter()
    try:
        model = build(scheme, base, tokenizer, work).eval()
    except (ImportError, ValueError, FileNotFoundError, subprocess.CalledProcessError) as e:
        log(f"{scheme}: unavailable ({e})")
        return {"error": f"{type(e).__name__}: {e}"}
    row: dict[str, Any] = {"build_s": round(time.perf_counter() - t, 1), "model_bytes": tensor_bytes(model)}
    row["rss_delta_bytes"] = _rss() - rss
    if "quality" in args.parts:
        row.update(quality(model, tokenizer, args))
    if "speed" in args.parts:
        row.update(speed(model, args))
    log(f"{scheme}: {row}")
    return row


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    cols = ["perplexity", "ppl_delta_pct", "sentiment_en_acc", "model_bytes", "decode_tok_s_b1", "decode_tok_s_b8",
            "prompt_tok_s_b1", "eager_decode_tok_s_b1", "decode_ratio_vs_llama_cpp",
            "prompt_ratio_vs_llama_cpp"]  # fmt: skip
    print("| scheme | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for scheme, row in rows.items():
        cells = [row.get(c) for c in cols]
        print(f"| {scheme} | " + " | ".join("" if v is None else f"{v:.4g}" for v in cells) + " |")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--schemes", default=",".join(SCHEMES), help=f"comma-separated, from: {', '.join(SCHEMES)}")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from: {', '.join(PARTS)}")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--batch-sizes", default="1,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ppl-chars", type=int, default=40000, help="characters of the held-out passage")
    p.add_argument("--harness", action="store_true", help="also sentiment_en accuracy (--limit documents)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--no-eager", dest="eager", action="store_false", help="skip the eager batch-1 reference")
    p.add_argument("--llama-bench", default=None, help="llama-bench binary (default $LLAMA_BENCH, then the build)")
    p.add_argument("--work", type=Path, default=None, help="folder for the converted GGUF files (default: temp)")
    args = p.parse_args(argv)
    args.parts = [x for x in args.parts.split(",") if x]
    args.batch_sizes = [int(x) for x in args.batch_sizes.split(",") if x]
    schemes = [x for x in args.schemes.split(",") if x]
    bad = [x for x in [*schemes] if x not in SCHEMES] + [x for x in args.parts if x not in PARTS]
    if bad:
        p.error(f"unknown scheme/part: {', '.join(bad)}")
    torch.set_num_threads(args.threads)
    # one compiled graph per (scheme, batch size) of the same FastLlama.forward: above Dynamo's default limit of 8
    # recompilations it would silently fall back to eager for the later schemes
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 4 * len(args.batch_sizes) * 12)
    work = args.work or Path(tempfile.mkdtemp(prefix="llmlab-compress-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    from llmlab.hub import load_for_inference

    loaded = load_for_inference(None)
    base, tokenizer = loaded.model.eval(), loaded.tokenizer
    rows = {s: run_scheme(s, base, tokenizer, args, work) for s in schemes}
    ref_ppl = rows.get("fp32", {}).get("perplexity")
    for row in rows.values():
        if ref_ppl and "perplexity" in row:
            row["ppl_delta_pct"] = 100 * (row["perplexity"] / ref_ppl - 1)
    anchor = anchors(args, work) if "llama_cpp" in args.parts else {"skipped": "not selected (--parts)"}
    ratios(rows, anchor)
    print_table(rows)
    result = {
        "benchmark": "compress", "schemes": rows, "llama_cpp": anchor, "threads": args.threads,
        "new_tokens": args.new_tokens, "prompt_tokens": args.prompt_tokens, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
    }  # fmt: skip
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
