"""`llmlab prune`: make a model sparse (masks) or smaller (heads and neurons removed), optionally in stages
with recovery fine-tuning between them, and write it as an llmlab folder that every verb loads.

    llmlab prune --method magnitude --sparsity 0.5 --out smollm2-50                     # packaged SmolLM2
    llmlab prune --model m/ --method wanda --sparsity 0.5 --calibration shakespeare --out m-wanda
    llmlab prune --method 2:4 --score wanda --out m-24
    llmlab prune --method structured --heads 3 --neurons 512 --importance activation --out m-small
    llmlab prune --method magnitude --sparsity 0.6 --steps 3 --recover-steps 50 --data text.txt --out m-60

Methods and papers: `llmlab.compress.prune` (magnitude, Han et al. 2015; N:M, Mishra et al. 2021; Wanda, Sun
et al. 2023; structured, Michel et al. 2019 / LLM-Pruner). Calibration windows (Wanda scores, activation
importance) are `--calibration-samples` windows of `--calibration-length` tokens drawn from a corpus: a
built-in name (`shakespeare`, `tinyshakespeare`) or a text/JSONL file or folder (`llmlab.data.sources`).

Iterative pruning (`--steps K`): stage k prunes to k/K of the target (masks extend the earlier ones;
structured stages remove the k-th share of heads/neurons), then `--recover-steps N` steps of full fine-tuning
with the existing loop (`llmlab.train.sft_loop.run_sft`) on `--data` (a JSONL file as `llmlab finetune` reads
it, or a plain text file cut into windows, every token learned). The masks stay applied during training (the
pruned weights stay zero); they are folded in before saving.

Every input is checked before anything is loaded or written; the output folder follows `llmlab.io.outputs`
(built beside it, published with the `.llmlab-output` marker, `--overwrite` replaces only an llmlab output)
and holds `model_config.json` + `model.safetensors`, the tokenizer, the chat template and `pruning.json` (the
request, the per-layer sparsity, the structured plan, the recovery losses).
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmlab.compress.prune import (
    PruneSpec,
    check_prune_args,
    collect_input_norms,
    make_permanent,
    overall_sparsity,
    prune_model,
    sparsity_report,
    stage_specs,
)
from llmlab.data.calibration import calibration_windows
from llmlab.data.sources import resolve_sources

VERB = "prune"
DEFAULT_CALIBRATION = "shakespeare"


@dataclass
class PruneReport:
    """What `prune` did (also written to the output folder as `pruning.json`)."""

    model: str
    method: str
    output: str
    params_before: int
    params_after: int
    sparsity: float  # zero weights / weights of the decoder layers' Linears
    layers: list[dict[str, Any]]
    stages: list[dict[str, Any]] = field(default_factory=list)
    structured: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class RecoveryConfig:
    """Recovery fine-tuning between pruning stages (0 steps = none)."""

    steps: int = 0
    data: str | None = None
    lr: float = 5e-5
    batch_size: int = 4
    max_length: int = 256
    seed: int = 0


def check_calibration(source: str, samples: int, length: int) -> None:
    """A calibration corpus must be a built-in corpus or an existing file/folder (ValueError: one line)."""
    from llmlab.data.sources import BUILTIN_CORPORA

    if samples < 1 or length < 2:
        raise ValueError(f"--calibration-samples {samples} / --calibration-length {length} must be >= 1 / >= 2")
    if source not in BUILTIN_CORPORA and not Path(source).exists():
        raise FileNotFoundError(
            f"--calibration {source}: no such file or folder, and not a built-in corpus ({', '.join(BUILTIN_CORPORA)})"
        )


def _recovery_examples(path: str, tokenizer: Any, chat_template: str | None, max_length: int) -> list[Any]:
    """Training examples: a JSONL file as `llmlab finetune` reads it, or a text file cut into token windows."""
    from llmlab.data.sft import IGNORE_INDEX, SFTExample, load_sft_examples

    if path.endswith(".jsonl"):
        examples, _ = load_sft_examples(path, tokenizer, chat_template=chat_template, max_length=max_length)
    else:
        ids = list(tokenizer.encode(Path(path).read_text(encoding="utf-8")))
        windows = [ids[i : i + max_length] for i in range(0, max(len(ids) - 1, 0), max_length)]
        examples = [SFTExample(w, w[1:] + [IGNORE_INDEX]) for w in windows if len(w) > 1]
    if not examples:
        raise ValueError(f"--data {path} gave no training examples; pass a longer text or a JSONL SFT file")
    return examples


def recover(model: torch.nn.Module, examples: list[Any], rc: RecoveryConfig, pad_id: int) -> dict[str, Any]:
    """`rc.steps` steps of full fine-tuning with the existing SFT loop; masks stay applied. Returns its summary."""
    from llmlab.data.sft import SFTBatchStream
    from llmlab.train.config import OptimConfig, ScheduleConfig, TrainConfig
    from llmlab.train.sft_loop import run_sft

    model.requires_grad_(True)
    stream = SFTBatchStream([examples], [1.0], rc.batch_size, rc.max_length, pad_id, seed=rc.seed)
    tc = TrainConfig(
        batch_size=rc.batch_size, max_iters=rc.steps, eval_interval=0, log_interval=max(1, rc.steps // 5),
        seed=rc.seed, device=str(next(model.parameters()).device), precision="fp32", tensorboard=False,
        progress=False,
    )  # fmt: skip
    oc = OptimConfig(lr=rc.lr, weight_decay=0.0, betas=[0.9, 0.999])
    sc = ScheduleConfig(warmup_iters=max(1, rc.steps // 10), min_lr=rc.lr / 10)
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_sft(model, stream, tc, oc, sc, Path(tmp), task_names=["recover"], say=lambda _m: None)
    model.eval().requires_grad_(False)
    return summary


def prune(
    model: str | None,
    method: str,
    out: str | Path,
    sparsity: float | None = None,
    *,
    heads: int | None = None,
    neurons: int | None = None,
    importance: str = "weight",
    score: str = "magnitude",
    calibration: str | None = None,
    calibration_samples: int = 32,
    calibration_length: int = 256,
    steps: int = 1,
    recovery: RecoveryConfig | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    say: Any = print,
) -> PruneReport:
    """Prune `model` (None = the packaged SmolLM2) with `method` and write the result to the folder `out`.

    Raises:
        ValueError / FileNotFoundError: one line naming the input and the fix, before anything is loaded or
            written (model-dependent checks, such as a head count the model cannot lose evenly, come right
            after loading and still before anything is written).
    """
    from llmlab.hub import fold_adapter, load_for_inference, require_mergeable, resolve_source
    from llmlab.nn.device import resolve_device
    from llmlab.recipes.convert import check_output

    spec = check_prune_args(method, sparsity, heads, neurons, importance, score)
    rc = recovery or RecoveryConfig()
    if steps < 1 or rc.steps < 0:
        raise ValueError(f"--steps {steps} must be >= 1 and --recover-steps {rc.steps} >= 0")
    if rc.steps and rc.data is None:
        raise ValueError("--recover-steps needs --data FILE (a JSONL SFT file or a plain text file)")
    if rc.data is not None and not Path(rc.data).is_file():
        raise FileNotFoundError(f"--data {rc.data}: no such file; pass a JSONL SFT file or a plain text file")
    if calibration is not None or spec.needs_calibration:
        calibration = calibration or DEFAULT_CALIBRATION
        check_calibration(calibration, calibration_samples, calibration_length)
    if model is not None and not Path(model).exists():
        raise FileNotFoundError(f"--model {model}: no such file or folder")
    dev = resolve_device(device)
    source = resolve_source(Path(model) if model is not None else None)
    if source.adapter_dir is not None:
        require_mergeable(source.adapter_dir)
    check_output(Path(out), "llmlab", source, overwrite, flag="--out")

    loaded = load_for_inference(source, device=str(dev))
    net = loaded.model
    if source.adapter_dir is not None:
        net, _ = fold_adapter(net)
    net.eval().requires_grad_(False)
    params_before = _count(net)
    stages = stage_specs(net, spec, steps)
    examples = _recovery_examples(rc.data, loaded.tokenizer, loaded.chat_template, rc.max_length) if rc.steps else []
    windows = (
        calibration_windows(resolve_sources([calibration]), loaded.tokenizer, calibration_samples, calibration_length)
        if spec.needs_calibration else []
    )  # fmt: skip
    pad_id = next((i for i in (loaded.tokenizer.pad_id, loaded.tokenizer.eos_id) if i is not None), 0)
    stage_rows, structured = [], None
    for k, stage in enumerate(stages, 1):
        norms = collect_input_norms(net, windows) if spec.needs_calibration else None
        net, report = prune_model(net, stage, norms)
        row: dict[str, Any] = {"stage": k, "sparsity": overall_sparsity(sparsity_report(net))}
        if report is not None:
            plan = dataclasses.asdict(report.plan)  # before -> after of this stage; keep the first "before"
            structured = plan if structured is None else {k: _join(structured[k], v) for k, v in plan.items()}
            row.update(heads_removed=stage.heads, neurons_removed=stage.neurons)
        if rc.steps:
            summary = recover(net, examples, rc, pad_id)
            row.update(first_loss=summary.get("first_train_loss"), final_loss=summary.get("final_train_loss"))
        say(_stage_line(row, len(stages)))
        stage_rows.append(row)
    make_permanent(net)
    layers = sparsity_report(net)
    notes = [source.note] if source.note else []
    if structured is not None:
        structured.update(_final_dims(net))
        c = net.config
        if getattr(c, "hidden_size", 0) % getattr(c, "num_attention_heads", 1):
            notes.append(f"{c.num_attention_heads} heads do not divide hidden_size {c.hidden_size}: llmlab loads "
                         "this model, but transformers refuses it (llmlab convert --format hf)")  # fmt: skip
    result = PruneReport(
        model=loaded.source, method=_method_name(spec), output=str(out), params_before=params_before,
        params_after=_count(net), sparsity=overall_sparsity(layers),
        layers=[{"name": r.name, "shape": list(r.shape), "sparsity": r.sparsity} for r in layers],
        stages=stage_rows, structured=structured,
        notes=notes,
    )  # fmt: skip
    _write(net, loaded, Path(out), result, spec)
    return result


def _method_name(spec: PruneSpec) -> str:
    """The method with the score it used where there is a choice (N:M by magnitude or Wanda, structured)."""
    if spec.nm is not None:
        return f"{spec.method}, {spec.score} scores"
    return f"{spec.method}, {spec.importance} importance" if spec.method == "structured" else spec.method


def _join(first: Any, last: Any) -> Any:
    """(before, after) pairs of two stages -> (first before, last after); other values: the last."""
    return (first[0], last[1]) if isinstance(first, (tuple, list)) else last


def _count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def _final_dims(model: torch.nn.Module) -> dict[str, Any]:
    c = model.config
    keys = ("num_attention_heads", "num_key_value_heads", "head_dim", "intermediate_size", "mlp_hidden")
    return {f"final_{k}": getattr(c, k) for k in keys if hasattr(c, k)}


def _stage_line(row: dict[str, Any], n: int) -> str:
    line = f"stage {row['stage']}/{n}: sparsity {100 * row['sparsity']:.1f}% of the decoder Linears"
    if "heads_removed" in row:
        removed = f"{row['heads_removed']} head(s) and {row['neurons_removed']} neuron(s) per layer"
        line = f"stage {row['stage']}/{n}: removed {removed}"
    if row.get("final_loss") is not None:
        line += f"; recovery loss {row['first_loss']:.4f} -> {row['final_loss']:.4f}"
    return line


def _write(model: torch.nn.Module, loaded: Any, out: Path, report: PruneReport, spec: PruneSpec) -> None:
    """The output folder: model + tokenizer + chat template + pruning.json, published atomically."""
    from llmlab.hub import save_tokenizer
    from llmlab.io import atomic_write_json, building_output
    from llmlab.models import save_llmlab

    with building_output(out, VERB) as tmp:
        save_llmlab(model.to("cpu"), tmp)
        if loaded.tokenizer is not None:
            save_tokenizer(loaded.tokenizer, tmp, loaded.chat_template)
        atomic_write_json(tmp / "pruning.json", {"request": dataclasses.asdict(spec), **dataclasses.asdict(report)})


def describe(report: PruneReport) -> str:
    """The CLI's lines: what was written, parameters, sparsity per kind of projection, notes."""
    kinds: dict[str, list[float]] = {}
    for layer in report.layers:
        kinds.setdefault(layer["name"].rsplit(".", 1)[-1], []).append(layer["sparsity"])
    per_kind = ", ".join(f"{k} {100 * sum(v) / len(v):.1f}%" for k, v in kinds.items())
    params = f"parameters: {report.params_before:,d} -> {report.params_after:,d}"
    if report.sparsity > 0 or not report.structured:
        params += f"; decoder Linears {100 * report.sparsity:.1f}% zero ({per_kind}; per layer in pruning.json)"
    lines = [f"pruned {report.model} ({report.method}); wrote {report.output}", params]
    if report.structured:
        s = report.structured
        lines.append(f"structured: heads {s['heads'][0]} -> {s['heads'][1]}, key/value heads {s['kv_heads'][0]} -> "
                     f"{s['kv_heads'][1]}, MLP neurons {s['neurons'][0]} -> {s['neurons'][1]} per layer")  # fmt: skip
    return "\n".join(lines + [f"note: {n}" for n in report.notes])


__all__ = ["PruneReport", "RecoveryConfig", "describe", "prune", "recover"]
