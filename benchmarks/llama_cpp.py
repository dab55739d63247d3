"""llama.cpp as a benchmark oracle: run `llama-bench` / `llama-perplexity` and parse their figures.

llama.cpp is never a dependency of llmlab: `bash benchmarks/build_llama_cpp.sh` builds it from the llama-cpp-python
0.3.9 sdist into ~/.cache/llmlab/llama.cpp/bin, and it is only measured against. The binary comes from
`--llama-bench PATH`, else `$LLAMA_BENCH`, else that build, else PATH; when none exists the callers record
"skipped" instead of a figure.

    python benchmarks/llama_cpp.py model.gguf --threads 2 -p 64 -n 64       # prints one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

DEFAULT_BUILD = Path(os.environ.get("LLMLAB_CACHE") or Path.home() / ".cache" / "llmlab") / "llama.cpp" / "bin"
"""Where benchmarks/build_llama_cpp.sh puts the binaries."""


def find_binary(name: str, given: str | None = None, env: str | None = None) -> Path | None:
    """The llama.cpp tool `name` (e.g. "llama-bench"): `given`, else `$env`, else the default build, else PATH."""
    for candidate in (given, os.environ.get(env or "") if env else None, str(DEFAULT_BUILD / name)):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which(name)
    return Path(found) if found else None


def llama_bench(
    binary: Path, model: Path, *, threads: int = 2, prompt: int = 64, gen: int = 64, reps: int = 3, timeout: int = 600
) -> dict[str, Any]:
    """`llama-bench -m model -t threads -p prompt -n gen -r reps -o json`: prompt and decode tokens/s (mean, sd)."""
    cmd = [str(binary), "-m", str(model), "-t", str(threads), "-p", str(prompt), "-n", str(gen)]
    cmd += ["-r", str(reps), "-o", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    rows = json.loads(proc.stdout[proc.stdout.index("[") :])
    out: dict[str, Any] = {"command": " ".join(cmd), "threads": threads}
    for row in rows:
        key = "prompt" if row.get("n_gen", 0) == 0 else "decode"
        out[f"{key}_tokens_per_s"] = float(row["avg_ts"])
        out[f"{key}_tokens_per_s_sd"] = float(row.get("stddev_ts", 0.0))
    out["model_size_bytes"] = int(rows[0].get("model_size", 0)) if rows else 0
    return out


def llama_perplexity(binary: Path, model: Path, text_file: Path, *, ctx: int = 512, threads: int = 2) -> float:
    """`llama-perplexity -m model -f text -c ctx`: the final perplexity estimate."""
    cmd = [str(binary), "-m", str(model), "-f", str(text_file), "-c", str(ctx), "-t", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    match = re.search(r"Final estimate: PPL = ([0-9.]+)", proc.stdout + proc.stderr)
    if proc.returncode != 0 or match is None:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--llama-bench", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("-p", "--prompt", type=int, default=64)
    p.add_argument("-n", "--gen", type=int, default=64)
    p.add_argument("-r", "--reps", type=int, default=3)
    args = p.parse_args(argv)
    binary = find_binary("llama-bench", args.llama_bench, "LLAMA_BENCH")
    if binary is None:
        result: dict[str, Any] = {"skipped": "llama-bench not found (pass --llama-bench or set LLAMA_BENCH)"}
    else:
        result = llama_bench(binary, args.model, threads=args.threads, prompt=args.prompt, gen=args.gen, reps=args.reps)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
