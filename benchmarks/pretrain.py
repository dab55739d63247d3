"""Training throughput of llmlab's GPT against `transformers` GPT-2 and a plain-PyTorch nanoGPT loop.

Configuration: nanoGPT's CPU run on tinyshakespeare (char level, vocab 65): n_layer=4, n_head=4, n_embd=128,
block_size=64, batch_size=12, dropout 0, AdamW lr 1e-3 betas (0.9, 0.99) weight decay 0.1, grad clip 1.0.
All three are GPT-2 blocks and do the same arithmetic: biases, the tanh GELU of GPT-2, learned positions, tied
embeddings, a 4x MLP (nanoGPT's own model drops the biases and uses the erf GELU; with GPT-2 blocks llmlab
reaches a lower val loss on this run — see docs/benchmarks.md — and transformers' GPT-2 cannot drop biases).
One "step" = forward + cross-entropy + backward + clip + optimizer step, each contestant with its own optimizer
set-up (llmlab: `build_optimizer`, which picks torch's fused AdamW kernel on CPU; the others: nanoGPT's AdamW
groups with the foreach kernel, as nanoGPT does on CPU).

Fairness: one process, the same `torch.set_num_threads`, fp32, the same pre-drawn batches, the same loss
(`F.cross_entropy` on the logits against the shifted targets), SDPA attention everywhere
(`attn_implementation="sdpa"` for transformers). Every model gets warmup steps first, then `--rounds`
interleaved rounds of `--steps` steps (the model order rotates every round); the median round counts.

    python benchmarks/pretrain.py                    # throughput ratios (about a minute on 2 cores)
    python benchmarks/pretrain.py --full             # + 2000-iteration training through `llmlab` (val loss)

The last line printed is ONE JSON object with every figure. Targets from the issue: llmlab >= 1.0x the plain
loop and >= 1.3x transformers GPT-2 in tokens/s; `--full` val loss <= 1.88 (nanoGPT's published figure).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
DIMS = dict(n_layer=4, n_head=4, n_embd=128, block_size=64)
BATCH_SIZE = 12
LR, BETAS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, (0.9, 0.99), 0.1, 1.0
BIAS = True  # GPT-2 blocks (nanoGPT's own default is bias = False; transformers' GPT-2 always has biases)


# ---- the plain-PyTorch reference: a compact nanoGPT ---------------------------------------------------------
class RefBlock(nn.Module):
    """Pre-LN Transformer block: x + attn(ln(x)), x + mlp(ln(x))."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd, bias=BIAS)
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=BIAS)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=BIAS)
        self.ln_2 = nn.LayerNorm(n_embd, bias=BIAS)
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=BIAS)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd, bias=BIAS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        x = x + self.c_proj(y.transpose(1, 2).reshape(B, T, C))
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))  # GPT-2's GELU


class RefGPT(nn.Module):
    """nanoGPT in 20 lines: token + learned position embeddings, blocks, final LayerNorm, tied LM head."""

    def __init__(self, vocab_size: int, n_layer: int, n_head: int, n_embd: int, block_size: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.blocks = nn.ModuleList(RefBlock(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd, bias=BIAS)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied embeddings
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.size(1)
        x = self.wte(idx) + self.wpe(torch.arange(T, device=idx.device))  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, V)


def nanogpt_adamw(model: nn.Module) -> torch.optim.Optimizer:
    """nanoGPT's optimizer: AdamW, weight decay on >= 2-D tensors only."""
    params = {id(p): p for p in model.parameters() if p.requires_grad}.values()
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=LR, betas=BETAS)


# ---- the three contestants ------------------------------------------------------------------------------------
def build_llmlab(vocab_size: int) -> tuple[nn.Module, torch.optim.Optimizer, callable]:
    from llmlab.models.gpt import GPT, GPTConfig

    config = GPTConfig(vocab_size=vocab_size, dropout=0.0, bias=BIAS, mlp="gelu", **DIMS)
    model = GPT(config)
    try:
        from llmlab.train.optim import build_optimizer

        optimizer, _ = build_optimizer(model, "adamw", lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS)
    except ImportError:
        optimizer = nanogpt_adamw(model)
    return model, optimizer, lambda m, x, y: m(x, y).loss


def build_hf_gpt2(vocab_size: int) -> tuple[nn.Module, torch.optim.Optimizer, callable]:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=DIMS["block_size"],
        n_embd=DIMS["n_embd"],
        n_layer=DIMS["n_layer"],
        n_head=DIMS["n_head"],
        activation_function="gelu_new",  # GPT-2's tanh GELU (the default, spelled out)
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config, attn_implementation="sdpa") if _accepts_attn_impl() else GPT2LMHeadModel(config)
    model.config._attn_implementation = "sdpa"

    def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = m(input_ids=x, use_cache=False).logits  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))

    return model, nanogpt_adamw(model), loss_fn


def _accepts_attn_impl() -> bool:
    import inspect

    from transformers import GPT2LMHeadModel

    return "attn_implementation" in str(inspect.signature(GPT2LMHeadModel.__init__))


def build_plain(vocab_size: int) -> tuple[nn.Module, torch.optim.Optimizer, callable]:
    model = RefGPT(vocab_size, **DIMS)

    def loss_fn(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = m(x)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))

    return model, nanogpt_adamw(model), loss_fn


# ---- measurement ----------------------------------------------------------------------------------------------
def load_batches(path: Path, n: int, seed: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], int]:
    """`n` random (x, y) char-level batches from the first 90% of the text, and the vocabulary size."""
    if not path.is_file():
        raise SystemExit(f"benchmark data not found: {path}; pass --data path/to/tinyshakespeare.txt")
    text = path.read_text(encoding="utf-8")
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text[: int(0.9 * len(text))]], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    T = DIMS["block_size"]
    batches = []
    for _ in range(n):
        ix = torch.randint(len(data) - T - 1, (BATCH_SIZE,), generator=gen)
        x = torch.stack([data[i : i + T] for i in ix])
        y = torch.stack([data[i + 1 : i + 1 + T] for i in ix])
        batches.append((x, y))
    return batches, len(chars)


def run_steps(entry: dict, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, float, float]:
    """Train on every batch; return (wall-clock seconds, CPU seconds of this process, last loss)."""
    model, optimizer, loss_fn, step_fn = entry["model"], entry["optimizer"], entry["loss_fn"], entry["step_fn"]
    t0, c0 = time.perf_counter(), time.process_time()
    loss = torch.tensor(float("nan"))
    for x, y in batches:
        loss = step_fn(model, optimizer, loss_fn, x, y)
    return time.perf_counter() - t0, time.process_time() - c0, float(loss)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor):
    loss = loss_fn(model, x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
    optimizer.step()
    return loss.detach()


def measure(args: argparse.Namespace) -> dict:
    torch.manual_seed(args.seed)
    n_batches = args.warmup + args.rounds * args.steps
    batches, vocab_size = load_batches(Path(args.data), n_batches, args.seed)
    builders = {
        "llmlab": build_llmlab,
        "plain_pytorch": build_plain,
        "hf_gpt2": build_hf_gpt2,
    }
    entries: dict[str, dict] = {}
    for name in args.models.split(","):
        if name not in builders:
            raise SystemExit(f"unknown model {name!r} in --models; choose from {', '.join(builders)}")
        torch.manual_seed(args.seed)
        model, optimizer, loss_fn = builders[name](vocab_size)
        model.train()
        n_params = sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
        if args.compile:
            model = torch.compile(model)
        entries[name] = dict(model=model, optimizer=optimizer, loss_fn=loss_fn, step_fn=train_step, params=n_params)
    tokens_per_step = BATCH_SIZE * DIMS["block_size"]
    for name, entry in entries.items():  # warmup (and compilation with --compile)
        seconds, _, loss = run_steps(entry, batches[: args.warmup])
        print(f"warmup {name:14s} {args.warmup} steps {seconds:6.2f}s loss {loss:.3f}", file=sys.stderr)
    names = list(entries)
    rates: dict[str, list[float]] = {n: [] for n in names}
    cpu_rates: dict[str, list[float]] = {n: [] for n in names}
    for r in range(args.rounds):
        chunk = batches[args.warmup + r * args.steps : args.warmup + (r + 1) * args.steps]
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            seconds, cpu_seconds, loss = run_steps(entries[name], chunk)
            rates[name].append(args.steps * tokens_per_step / seconds)
            cpu_rates[name].append(args.steps * tokens_per_step / cpu_seconds)
            print(
                f"round {r} {name:14s} {rates[name][-1]:9.0f} tok/s {cpu_rates[name][-1]:9.0f} tok/cpu-s {loss:.3f}",
                file=sys.stderr,
            )
    median = {n: statistics.median(v) for n, v in rates.items()}
    best = {n: max(v) for n, v in rates.items()}  # the least disturbed round: robust on a busy machine
    cpu_median = {n: statistics.median(v) for n, v in cpu_rates.items()}  # immune to waiting for a core
    result = {
        "config": {**DIMS, "batch_size": BATCH_SIZE, "vocab_size": vocab_size, "dtype": "float32", "bias": BIAS},
        "threads": torch.get_num_threads(),
        "compile": args.compile,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "warmup_steps": args.warmup,
        "params": {n: e["params"] for n, e in entries.items()},
        "tokens_per_s": {n: round(v, 1) for n, v in median.items()},
        "tokens_per_s_best": {n: round(v, 1) for n, v in best.items()},
        "tokens_per_cpu_s": {n: round(v, 1) for n, v in cpu_median.items()},
        "tokens_per_s_rounds": {n: [round(x, 1) for x in v] for n, v in rates.items()},
        "targets": {"ratio_vs_plain_pytorch": 1.0, "ratio_vs_hf_gpt2": 1.3},
    }
    if "llmlab" in median:
        for other in ("plain_pytorch", "hf_gpt2"):
            if other in median:
                result[f"ratio_vs_{other}"] = round(median["llmlab"] / median[other], 3)
                result[f"best_round_ratio_vs_{other}"] = round(best["llmlab"] / best[other], 3)
                result[f"cpu_time_ratio_vs_{other}"] = round(cpu_median["llmlab"] / cpu_median[other], 3)
        if {"ratio_vs_plain_pytorch", "ratio_vs_hf_gpt2"} <= result.keys():
            result["meets_targets"] = result["ratio_vs_plain_pytorch"] >= 1.0 and result["ratio_vs_hf_gpt2"] >= 1.3
    return result


# ---- --full: the real pipeline --------------------------------------------------------------------------------
def _llmlab(*cli_args: str, cwd: Path, threads: int) -> None:
    """Run `python -m llmlab ...` (the real CLI) with `threads` intra-op threads; fail loudly if it fails."""
    cmd = [sys.executable, "-m", "llmlab", *cli_args]
    print("$ llmlab " + " ".join(cli_args), file=sys.stderr)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=sys.stderr, stderr=sys.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"`llmlab {cli_args[0]}` failed with exit status {proc.returncode}")


def full_run(args: argparse.Namespace) -> dict:
    """2000-iteration char-level training through `llmlab data prepare` + `llmlab pretrain`; final val loss.

    Also scores the held-out 10% with `llmlab.eval.evaluate_perplexity` (sliding windows) for bits per char.
    """
    from llmlab.eval import evaluate_perplexity
    from llmlab.hub import load_model_and_tokenizer

    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="llmlab-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    data_dir, run_dir = work / "data" / "tinyshakespeare-char", work / "runs" / "shakespeare-char"
    if not (data_dir / "meta.json").is_file():
        _llmlab(
            "data", "prepare", "--source", str(Path(args.data).resolve()), "--out", str(data_dir),
            "--tokenizer-kind", "char", "--split-mode", "tail", "--val-fraction", "0.1", "--no-clean",
            cwd=work, threads=args.threads,
        )  # fmt: skip
    config = REPO / "configs" / "pretrain" / "shakespeare-char.yaml"
    overrides = [f"data.dir={data_dir}", f"out_dir={run_dir}", f"train.max_iters={args.full_iters}"]
    overrides += ["train.device=cpu"] + (["train.compile=true"] if args.compile else [])
    t0 = time.perf_counter()
    _llmlab("pretrain", "--config", str(config), *overrides, cwd=work, threads=args.threads)
    train_seconds = time.perf_counter() - t0
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    model, tokenizer = load_model_and_tokenizer(run_dir)
    text = Path(args.data).read_text(encoding="utf-8")
    heldout = text[int(0.9 * len(text)) :]
    ppl = evaluate_perplexity(model, tokenizer, heldout, batch_size=32)
    final_val = summary.get("final_val_loss")
    return {
        "iters": args.full_iters,
        "final_val_loss": final_val,
        "best_val_loss": summary.get("best_val_loss"),
        "final_train_loss": summary.get("final_train_loss"),
        "target_val_loss": 1.88,
        "meets_target": final_val is not None and final_val <= 1.88,
        "train_seconds": round(train_seconds, 1),
        "heldout_sliding_window": {k: ppl[k] for k in ("loss", "perplexity", "bits_per_char", "tokens_scored")},
        "run_dir": str(run_dir),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (the median counts)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per model first")
    parser.add_argument("--threads", type=int, default=min(os.cpu_count() or 1, 8), help="torch.set_num_threads")
    parser.add_argument("--compile", action="store_true", help="torch.compile every training step")
    parser.add_argument("--full", action="store_true", help="also train 2000 iterations with llmlab (val loss)")
    parser.add_argument("--full-iters", type=int, default=2000, help="training iterations of --full")
    parser.add_argument("--workdir", default=None, help="folder for --full's data and run (default: a temp dir)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="tinyshakespeare.txt")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--models", default="llmlab,plain_pytorch,hf_gpt2", help="comma-separated subset to time")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = measure(args)
    if args.full:
        result["full"] = full_run(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
