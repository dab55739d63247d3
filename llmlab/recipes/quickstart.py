"""`llmlab quickstart`: the whole from-scratch pipeline on the embedded Shakespeare corpus, in one command.

1. prepare the corpus: clean (NFKC, PII scrubbing, exact + MinHash near dedup, quality filters), split, train a
   byte-level BPE tokenizer, pack the token ids into memory-mapped shards;
2. pretrain a small GPT (pre-LN, learned positions, GELU MLP, tied embeddings; AdamW, warmup + cosine);
3. evaluate perplexity and bits per character on held-out text;
4. sample continuations with the KV cache;
5. write `report.md` with the loss curve.

About five minutes on two CPU cores; `fast=True` runs the same steps on a small slice in seconds (for tests).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from llmlab.config import load_config
from llmlab.data import PrepareConfig, prepare_corpus
from llmlab.data.loader import TokenDataset
from llmlab.data.sources import BUILTIN_CORPORA
from llmlab.eval import evaluate_perplexity
from llmlab.generate import stream_generate, stream_text
from llmlab.hub import load_model_and_tokenizer
from llmlab.io import atomic_write_text, make_temp_dir
from llmlab.recipes.pretrain import load_pretrain_config, pretrain
from llmlab.recipes.report import plot_loss_curve, write_report
from llmlab.train.logging import read_metrics
from llmlab.train.run_dir import RunDir, open_run

PROMPTS = ("ROMEO:\n", "JULIET:\nO ", "First Citizen:\n")


@dataclass
class QuickstartPlan:
    """The sizes of one quickstart run (the full run and the `--fast` one differ only in these numbers)."""

    vocab_size: int
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    batch_size: int
    max_iters: int
    eval_interval: int
    eval_iters: int
    sample_tokens: int
    eval_chars: int
    corpus_chars: int  # 0 = the whole corpus


FULL = QuickstartPlan(
    vocab_size=2048, n_layer=4, n_head=4, n_embd=192, block_size=128, batch_size=16, max_iters=1000,
    eval_interval=200, eval_iters=20, sample_tokens=160, eval_chars=30_000, corpus_chars=0,
)  # fmt: skip
FAST = QuickstartPlan(
    vocab_size=384, n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_iters=30,
    eval_interval=15, eval_iters=4, sample_tokens=24, eval_chars=2_000, corpus_chars=120_000,
)  # fmt: skip


def _say(console: Any, msg: str) -> None:
    if console is not None:
        console.rule(msg)


def _corpus_excerpt(dest: Path, max_chars: int) -> Path:
    """The first `max_chars` characters of the built-in corpus, as one text file (for `--fast`)."""
    dest.mkdir(parents=True, exist_ok=True)
    text, files = "", BUILTIN_CORPORA["shakespeare"]()
    for f in files:
        text += f.read_text(encoding="utf-8", errors="replace") + "\n\n"
        if len(text) >= max_chars:
            break
    out = dest / "shakespeare-excerpt.txt"
    out.write_text(text[:max_chars], encoding="utf-8")
    return out


def quickstart(
    out_dir: str | os.PathLike = "runs/quickstart",
    fast: bool = False,
    max_iters: int | None = None,
    seed: int = 1337,
    console: Any = None,
) -> dict[str, Any]:
    """Run the five steps; returns the facts written to `report.md` (also `quickstart.json`).

    `out_dir` follows `llmlab.train.run_dir`: a missing or empty folder, or an earlier llmlab output (replaced);
    a non-empty folder that llmlab did not create is refused before anything is written.
    """
    plan = FAST if fast else FULL
    if max_iters is not None:
        plan = dataclasses.replace(plan, max_iters=max_iters)
    run = open_run(out_dir, "quickstart", resume=False, overwrite=True, max_iters=plan.max_iters)
    run.extra_entries = ("data", "report.md", "loss_curve.png", "quickstart.json")
    with run.guard():
        return _quickstart(run, plan, seed, console)


def _quickstart(run_dir: RunDir, plan: QuickstartPlan, seed: int, console: Any) -> dict[str, Any]:
    run = run_dir.path
    run_dir.create()
    t0 = time.perf_counter()
    torch.manual_seed(seed)

    _say(console, "1/5  corpus: clean, split, train a byte-level BPE tokenizer, pack shards")
    excerpt_dir = make_temp_dir(run / "source", "excerpt") if plan.corpus_chars else None  # ours alone
    try:
        source = str(_corpus_excerpt(excerpt_dir, plan.corpus_chars)) if excerpt_dir else "shakespeare"
        prep = load_config(
            PrepareConfig,
            None,
            [f"sources=[{json.dumps(source)}]", f"out_dir={run / 'data'}", "tokenizer.kind=bpe",
             f"tokenizer.vocab_size={plan.vocab_size}", "split.mode=tail"],
        )  # fmt: skip
        report = prepare_corpus(prep, log=console.print if console is not None else None, overwrite=True)
    finally:
        if excerpt_dir is not None:
            shutil.rmtree(excerpt_dir, ignore_errors=True)

    _say(console, "2/5  pretrain a small GPT")
    cfg = load_pretrain_config(
        None,
        [
            f"data.dir={run / 'data'}", f"out_dir={run}",
            f"model.n_layer={plan.n_layer}", f"model.n_head={plan.n_head}", f"model.n_embd={plan.n_embd}",
            f"model.block_size={plan.block_size}", "model.dropout=0.0",
            f"train.batch_size={plan.batch_size}", f"train.max_iters={plan.max_iters}",
            f"train.eval_interval={plan.eval_interval}", f"train.eval_iters={plan.eval_iters}",
            f"train.save_interval={plan.max_iters}", "train.log_interval=10", f"train.seed={seed}",
            f"train.progress={'false' if console is None else 'true'}",
            "optim.lr=2e-3", "schedule.warmup_iters=" + str(max(plan.max_iters // 20, 1)), "schedule.min_lr=2e-4",
        ],
    )  # fmt: skip
    summary = pretrain(cfg, run=run_dir)

    _say(console, "3/5  evaluate on held-out text")
    model, tokenizer = load_model_and_tokenizer(run)
    val_ids = TokenDataset(run / "data", "val").tokens[: plan.eval_chars]  # ~4 chars per token: plenty of text
    heldout = tokenizer.decode([int(i) for i in val_ids])[: plan.eval_chars]
    ppl = evaluate_perplexity(model, tokenizer, heldout, stride=plan.block_size // 2)
    if console is not None:
        console.print(
            f"held-out: {ppl['characters']:,} chars, loss {ppl['loss']:.3f} nats/token, "
            f"perplexity {ppl['perplexity']:.1f}, {ppl['bits_per_char']:.3f} bits/char"
        )

    _say(console, "4/5  samples (temperature 0.8, top-k 50, KV cache)")
    samples = []
    for i, prompt in enumerate(PROMPTS):
        ids = tokenizer.encode(prompt)
        stream = stream_generate(
            model, torch.tensor([ids]), plan.sample_tokens, temperature=0.8, top_k=50, seed=seed + i,
            eos_token_id=tokenizer.eos_id,
        )  # fmt: skip
        text = prompt
        if console is not None:
            console.print(prompt, end="", markup=False, highlight=False)
        for delta in stream_text(tokenizer, (int(t[0]) for t in stream), prompt_ids=ids):
            text += delta
            if console is not None:
                console.print(delta, end="", markup=False, highlight=False)
        if console is not None:
            console.print("\n")
        samples.append((prompt, text))

    _say(console, "5/5  report")
    facts = {
        "corpus": f"{report.documents_out} documents, {report.chars_out:,} chars after cleaning "
        f"({report.chars_in - report.chars_out:,} removed)",
        "tokenizer": f"byte-level BPE, {report.vocab_size} tokens; {report.train_tokens:,} train / "
        f"{report.val_tokens:,} val tokens",
        "model": f"GPT {plan.n_layer} layers x {plan.n_embd} wide, {plan.n_head} heads, context {plan.block_size}, "
        f"{model.num_parameters():,} parameters",
        "training": f"{summary.get('iters', plan.max_iters)} iterations, {summary.get('tokens_per_sec', 0):,.0f} "
        "tokens/s",
        "final val loss": f"{summary.get('final_val_loss', float('nan')):.4f} nats/token",
        "held-out perplexity": f"{ppl['perplexity']:.2f} ({ppl['bits_per_char']:.3f} bits/char, "
        f"{ppl['bits_per_byte']:.3f} bits/byte)",
        "wall time": f"{time.perf_counter() - t0:.0f} s",
    }
    plot_loss_curve(read_metrics(run / "metrics.jsonl"), run / "loss_curve.png", title="quickstart: GPT on Shakespeare")
    path = write_report(run, "llmlab quickstart", facts, samples)
    result = {"facts": facts, "perplexity": ppl, "summary": summary, "prepare": report.to_dict(), "report": str(path)}
    atomic_write_text(run / "quickstart.json", json.dumps(result, indent=2, default=str))
    if console is not None:
        for k, v in facts.items():
            console.print(f"[bold]{k}[/]: {v}")
        console.print(f"\nreport: {path}")
    return result
