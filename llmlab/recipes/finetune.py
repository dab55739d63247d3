"""The supervised fine-tuning recipe behind ``llmlab finetune``: base model + JSONL data -> adapter or weights.

    llmlab finetune --config configs/finetune/smollm2-lora.yaml --method lora data.train=alpaca.jsonl
    llmlab finetune --config cfg.yaml --method full base=runs/pretrain/checkpoints/last train.max_iters=100

Methods: `full` (every weight), `partial` (named modules or the last N layers, `partial.*`), and the PEFT
methods of `llmlab.peft`: `lora`, `qlora`, `adapter`, `prefix`, `prompt`, `ia3` (their settings go in
`peft:`, the fields of `llmlab.peft.LoraConfig` etc.).

Training is `llmlab.train.sft_loop.SFTTrainer`, the fine-tuning specialisation of the one `llmlab.train.Trainer`:
`checkpoints/last` is written atomically every `train.save_interval` steps and at the end; `llmlab finetune ...
--resume` (or `resume: true`) continues it bit-exactly. Data parallel: `torchrun --nproc_per_node=2 -m llmlab
finetune ...` (DDP; `batch_size` per process).

The run folder (`out_dir`) holds `config.yaml` (resolved), `metrics.jsonl`, `tb/`, `checkpoints/last/`
(`trainable.safetensors` + `trainer_state.pt`), and at the end `summary.json`, `tokenizer.json`, and either
`adapter/` (Hugging Face PEFT format, see `llmlab.peft.save_adapter`; merge it with `llmlab merge`) or `model/`
(an llmlab checkpoint with its tokenizer, for full and partial tuning); each is written atomically. The folder
follows `llmlab.train.run_dir` (a new run never takes a foreign folder; `overwrite=true` replaces only an earlier
llmlab output; a run that fails before its first checkpoint removes only what it created).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from llmlab.recipes.finetune_config import (
    DEFAULT_BASE_NAME,
    METHODS,
    PEFT_METHODS,
    FinetuneConfig,
    PartialConfig,
    TaskConfig,
    load_finetune_config,
    peft_config,
)

__all__ = [
    "DEFAULT_BASE_NAME",
    "METHODS",
    "PEFT_METHODS",
    "FinetuneConfig",
    "PartialConfig",
    "apply_method",
    "finetune",
    "label_accuracy",
    "load_finetune_config",
    "peft_config",
]


# ---------------------------------------------------------------------------------------------- pieces
def apply_method(model: Any, cfg: FinetuneConfig, base_name: str, tokenizer: Any = None) -> str:
    """Make the right parameters trainable (adding adapters for PEFT methods); return a one-line report.

    PEFT methods get their config from `peft_config` (a prompt/prefix init text is tokenized with `tokenizer`).
    """
    from llmlab.peft import count_parameters, freeze_except, get_peft_model, train_last_n_layers

    if cfg.method == "full":
        model.requires_grad_(True)
    elif cfg.method == "partial":
        if cfg.partial.modules:
            freeze_except(model, list(cfg.partial.modules))
        else:
            train_last_n_layers(model, cfg.partial.last_n_layers, cfg.partial.include_head)
    else:
        get_peft_model(model, peft_config(cfg.method, dict(cfg.peft), base_name, tokenizer))
    trainable, total = count_parameters(model)
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def _tasks(cfg: FinetuneConfig) -> list[TaskConfig]:
    d = cfg.data
    if d.tasks:
        return list(d.tasks)
    return [TaskConfig(name="train", path=str(d.train), val_path=d.val)]


def _reserved_positions(cfg: FinetuneConfig) -> int:
    """Positions prompt/prefix tuning put before the real tokens (they count against the model's context)."""
    return peft_config(cfg.method, dict(cfg.peft)).reserved_positions() if cfg.method in PEFT_METHODS else 0


def label_accuracy(model: Any, tokenizer: Any, examples: list[Any], labels: list[str]) -> tuple[float, int]:
    """Accuracy of picking the most likely label word after each example's prompt: (accuracy, examples scored).

    The gold label of an example is the label whose tokens begin its response (examples whose response is no
    label are skipped).
    """
    import torch

    from llmlab.models.heads import score_labels

    label_ids = [tokenizer.encode(lab) for lab in labels]
    prompts, golds = [], []
    for ex in examples:
        response = ex.input_ids[ex.prompt_len :]
        matches = [i for i, ids in enumerate(label_ids) if ids and response[: len(ids)] == ids]
        if matches:
            prompts.append(ex.input_ids[: ex.prompt_len])
            golds.append(max(matches, key=lambda i: len(label_ids[i])))
    scored = len(prompts)
    correct = int((score_labels(model, prompts, label_ids).argmax(-1) == torch.tensor(golds)).sum()) if scored else 0
    return (correct / scored if scored else float("nan")), scored


# ---------------------------------------------------------------------------------------------- run folder
def _run_identity(cfg: FinetuneConfig) -> dict[str, Any]:
    """What a checkpoint must have been made from to be resumed with `cfg` (JSON primitives)."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return {k: d[k] for k in ("base", "method", "peft", "partial", "data")} | {"train": {"seed": d["train"]["seed"]}}


def write_outputs(model: Any, tokenizer: Any, cfg: FinetuneConfig, base_name: str, chat_template: Any) -> str:
    """The run's results, each written atomically: tokenizer files and `adapter/` or `model/`. Returns its path."""
    from llmlab.hub import save_model_folder, save_tokenizer
    from llmlab.io import make_temp_dir

    out = Path(cfg.out_dir)
    tmp = make_temp_dir(out / "outputs")
    try:
        save_tokenizer(tokenizer, tmp, chat_template)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
        if cfg.method in PEFT_METHODS:
            from llmlab.peft import save_adapter

            local = Path(base_name)
            recorded = str(local.resolve()) if local.exists() else base_name  # found again from any directory
            save_adapter(model, out / "adapter", base_model_name_or_path=recorded)  # atomic
            return str(out / "adapter")
        return str(save_model_folder(model, tokenizer, out / "model", chat_template))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def describe(summary: dict[str, Any]) -> str:
    """The lines `llmlab finetune` prints at the end of a run."""
    lines = []
    for key in ("first_train_loss", "final_train_loss", "final_val_loss", "val_accuracy", "wall_time_s"):
        value = summary.get(key)
        if value is not None:
            lines.append(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    lines.append(f"saved: {summary.get('adapter') or summary.get('model')} (resume state: {summary['checkpoint']})")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- recipe
def finetune(cfg: FinetuneConfig, say: Any = print) -> dict[str, Any]:
    """Run supervised fine-tuning as configured; return the summary (also saved as `summary.json`).

    Works as one process or under `torchrun` (`train.distributed`: DDP; only rank 0 writes and prints).
    With `cfg.resume`, continues `out_dir/checkpoints/last` exactly. The config, the data files, the device and
    the run folder are all checked before anything is loaded or written.

    Raises:
        ValueError / FileNotFoundError: one line naming the problem (bad data line, unknown target module,
            existing out_dir, a resume with other settings, ...). A run that fails before its first checkpoint
            removes what it created; one that fails later keeps it, to be continued with `--resume`.
    """
    from llmlab.hub import find_adapter_dir
    from llmlab.train.distributed import barrier, cleanup, init_distributed
    from llmlab.train.precision import check_runtime
    from llmlab.train.run_dir import open_run

    cfg.validate()
    device, _ = check_runtime(cfg.train.device, cfg.train.precision, cfg.train.distributed)
    tasks = _tasks(cfg)
    for t in tasks:  # fail on a missing file before loading a model
        for p in (t.path, t.val_path):
            if p and not Path(p).is_file():
                raise FileNotFoundError(f"data file not found: {p}")
    base = Path(cfg.base) if cfg.base is not None else None
    if base is not None and base.is_dir() and find_adapter_dir(base) is not None:
        raise ValueError(
            f"base={cfg.base} is an adapter on a base model; fold it in first (llmlab merge --adapter "
            f"{find_adapter_dir(base)} --out merged) and fine-tune the merged folder"
        )
    sources = [p for p in (base, *(t.path for t in tasks), *(t.val_path for t in tasks)) if p and Path(p).exists()]
    run = open_run(
        cfg.out_dir, "finetune", resume=cfg.resume, overwrite=cfg.overwrite, max_iters=cfg.train.max_iters,
        identity=_run_identity(cfg), sources=sources,
    )  # fmt: skip
    ctx = init_distributed(cfg.train.distributed, device.type)
    try:
        summary = _finetune(cfg, ctx, run, tasks, say if ctx.is_main else (lambda _msg: None))
        barrier(ctx)  # every rank's last collective is done before the process group goes away
        return summary
    finally:
        cleanup(ctx)


def _load_tasks(cfg: FinetuneConfig, tasks: list[TaskConfig], tokenizer: Any, chat_template: Any, max_length: int,
                say: Any) -> tuple[list[list[Any]], list[list[Any]]]:  # fmt: skip
    """Tokenized training and held-out examples of every task."""
    from llmlab.data.sft import load_sft_examples, split_examples

    d = cfg.data
    train_sets, val_sets, dropped = [], [], 0
    for k, t in enumerate(tasks):
        kw = dict(
            fmt=t.format or d.format, template=t.template or d.template, chat_template=chat_template,
            max_length=max_length, train_on_prompt=d.train_on_prompt, add_bos=d.add_bos, add_eos=d.add_eos, task=k,
        )  # fmt: skip
        examples, n_drop = load_sft_examples(t.path, tokenizer, **kw)
        dropped += n_drop
        if t.val_path:
            val, n_drop = load_sft_examples(t.val_path, tokenizer, **kw)
            dropped += n_drop
        else:
            examples, val = split_examples(examples, d.val_fraction, cfg.train.seed + k)
        if cfg.train.max_eval_examples:
            val = val[: cfg.train.max_eval_examples]
        train_sets.append(examples)
        val_sets.append(val)
    if dropped:
        say(f"dropped {dropped} example(s) with no response token left within max_length={max_length}")
    return train_sets, val_sets


def _finetune(cfg: FinetuneConfig, ctx: Any, run: Any, tasks: list[TaskConfig], say: Any) -> dict[str, Any]:
    import torch

    from llmlab.data.sft import SFTBatchStream, eval_batches, examples_fingerprint
    from llmlab.hub import load_for_inference
    from llmlab.train.distributed import barrier
    from llmlab.train.run_dir import check_resume
    from llmlab.train.sft_loop import SFTTrainer, load_trainable

    torch.manual_seed(cfg.train.seed)
    loaded = load_for_inference(cfg.base)
    model, tokenizer = loaded.model, loaded.tokenizer
    base_name = cfg.base or DEFAULT_BASE_NAME
    chat_template = cfg.data.chat_template or loaded.chat_template
    max_length = min(cfg.data.max_length, model.config.block_size - _reserved_positions(cfg))
    train_sets, val_sets = _load_tasks(cfg, tasks, tokenizer, chat_template, max_length, say)
    run_info = {**_run_identity(cfg), "data_sha256": examples_fingerprint(train_sets)}
    if run.resume_state is not None:
        check_resume(run.resume_state.get("run", {}), run_info, run.path)

    report = apply_method(model, cfg, base_name, tokenizer)
    say(f"{cfg.method} fine-tuning of {base_name}: {report}")
    if run.resume_state is not None:
        load_trainable(model, run.last)
    pad_id = next((i for i in (tokenizer.pad_id, tokenizer.eos_id) if i is not None), 0)
    stream = SFTBatchStream(
        train_sets, [t.weight for t in tasks], cfg.train.batch_size, max_length, pad_id, cfg.data.packing,
        cfg.train.data_order_seed, rank=ctx.rank, world_size=ctx.world_size,
    )  # fmt: skip
    val_all = [ex for v in val_sets for ex in v]
    labels = list(cfg.classification.labels)

    def val_batches():  # noqa: ANN202
        return eval_batches(val_all, cfg.train.eval_batch_size, pad_id)

    def extra_eval(m: Any) -> dict[str, float]:
        acc, n = label_accuracy(m, tokenizer, val_all, labels)
        return {"val_accuracy": acc, "val_scored": n}

    barrier(ctx)  # every rank has checked out_dir before rank 0 changes it
    if ctx.is_main:
        run.create(dataclasses.replace(cfg, resume=False))
    barrier(ctx)
    with run.guard(enabled=ctx.is_main):
        trainer = SFTTrainer(
            model, stream, cfg.train, cfg.optim, cfg.schedule, run.path, task_names=[t.name for t in tasks],
            val_batches=val_batches if val_all else None, extra_eval=extra_eval if val_all and labels else None,
            say=say, ctx=ctx, resume_state=run.resume_state, run_info=run_info,
        )  # fmt: skip
        summary = trainer.fit()
        if ctx.is_main:
            model.to("cpu")
            summary["adapter" if cfg.method in PEFT_METHODS else "model"] = write_outputs(
                model, tokenizer, cfg, base_name, chat_template
            )
            summary.update(
                method=cfg.method, base=base_name, trainable=report, train_examples=[len(s) for s in train_sets],
                val_examples=[len(v) for v in val_sets], checkpoint=str(run.last), out_dir=str(run.path),
            )  # fmt: skip
            run.write_summary(summary)
            say(describe(summary))
        barrier(ctx)
    return summary
