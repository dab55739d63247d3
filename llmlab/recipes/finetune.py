"""The supervised fine-tuning recipe behind ``llmlab finetune``: base model + JSONL data -> adapter or weights.

    llmlab finetune --config configs/finetune/smollm2-lora.yaml --method lora data.train=alpaca.jsonl
    llmlab finetune --config cfg.yaml --method full base=runs/pretrain/checkpoints/last train.max_iters=100

Methods: `full` (every weight), `partial` (named modules or the last N layers, `partial.*`), and the PEFT
methods of `llmlab.peft`: `lora`, `qlora`, `adapter`, `prefix`, `prompt`, `ia3` (their settings go in
`peft:`, the fields of `llmlab.peft.LoraConfig` etc.).

Checkpoints and resume (`llmlab.train.sft_loop`): `checkpoints/last` is written atomically every
`train.save_interval` steps and at the end; `llmlab finetune ... --resume` (or `resume: true`) continues it
bit-exactly. Data parallel: `torchrun --nproc_per_node=2 -m llmlab finetune ...` (DDP; `batch_size` per process).

The run folder (`out_dir`) holds `config.yaml` (resolved), `metrics.jsonl`, `tb/`, `checkpoints/last/`
(`trainable.safetensors` + `trainer_state.pt`), and at the end `summary.json`, `tokenizer.json`, and either
`adapter/` (Hugging Face PEFT format, see `llmlab.peft.save_adapter`; merge it with `llmlab merge`) or `model/`
(an llmlab checkpoint with its tokenizer, for full and partial tuning); each is written atomically. A run that
fails before its first checkpoint leaves no `out_dir` behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.config import load_config, save_config
from llmlab.data.templates import RECORD_FORMATS, TEMPLATE_NAMES
from llmlab.generate.checkpoint import DEFAULT_MODEL_NAME
from llmlab.train.config import OptimConfig, ScheduleConfig
from llmlab.train.sft_loop import SFTTrainConfig

METHODS = ("full", "partial", "lora", "qlora", "adapter", "prefix", "prompt", "ia3")
PEFT_METHODS = {
    "lora": "LoraConfig",
    "qlora": "QLoraConfig",
    "adapter": "AdapterConfig",
    "prefix": "PrefixConfig",
    "prompt": "PromptConfig",
    "ia3": "IA3Config",
}
DEFAULT_BASE_NAME = DEFAULT_MODEL_NAME  # the packaged SmolLM2, what `base: null` loads


@dataclass
class TaskConfig:
    """One data set of a multi-task mixture.

    Attributes:
        name: task name (per-task losses are logged as `loss_<name>` / `val_loss_<name>`).
        path: training JSONL.
        weight: sampling weight (probability = weight / sum of weights).
        val_path: held-out JSONL (None: hold out `data.val_fraction` of `path`).
        format: record format (None = `data.format`).
        template: prompt template (None = `data.template`).
    """

    name: str = ""
    path: str = ""
    weight: float = 1.0
    val_path: str | None = None
    format: str | None = None
    template: str | None = None


@dataclass
class SFTDataConfig:
    """The fine-tuning data.

    Attributes:
        train: training JSONL (a single task named "train"), or None when `tasks` is set.
        val: held-out JSONL for `train` (None: hold out `val_fraction` of it).
        tasks: several data sets mixed by weight (instead of `train`).
        val_fraction: share of each task held out when it has no val file (0 = no evaluation).
        format: auto | alpaca | messages | prompt_completion (auto: decided per line by its keys).
        template: alpaca | alpaca-zh | chat | plain (`messages` records always use the chat template).
        chat_template: a template name (chatml, llama3, zh, llama2) or Jinja source; None = the model's own
            (chatml when it has none).
        max_length: longest example in tokens (longer ones are cut; the model's context is the upper bound).
        train_on_prompt: also learn the prompt tokens (default: loss on the response only).
        add_bos: start every example with the tokenizer's BOS token.
        add_eos: end every response with EOS (so the model learns to stop).
        packing: put several examples into each row (block-diagonal attention; positions restart for Llama).
    """

    train: str | None = None
    val: str | None = None
    tasks: list[TaskConfig] = field(default_factory=list)
    val_fraction: float = 0.1
    format: str = "auto"
    template: str = "alpaca"
    chat_template: str | None = None
    max_length: int = 512
    train_on_prompt: bool = False
    add_bos: bool = False
    add_eos: bool = True
    packing: bool = False


@dataclass
class PartialConfig:
    """`--method partial`: which parameters train (the rest stay frozen).

    Attributes:
        modules: module/parameter names (dotted parts, e.g. `lm_head`, `model.layers.29`, `mlp`).
        last_n_layers: or train the last N Transformer layers.
        include_head: with `last_n_layers`, also train the final norm and the output layer.
    """

    modules: list[str] = field(default_factory=list)
    last_n_layers: int = 0
    include_head: bool = True


@dataclass
class ClassificationConfig:
    """Classification as instruction following: responses are label words.

    Attributes:
        labels: the label words; when set, the held-out accuracy is logged (`val_accuracy`): the predicted
            label is the one with the highest log-likelihood after the prompt.
    """

    labels: list[str] = field(default_factory=list)


@dataclass
class FinetuneConfig:
    """Everything `llmlab finetune` needs (see `configs/finetune/*.yaml`).

    Attributes:
        base: the base model (llmlab/HF folder, run folder or .gguf); None = SmolLM2-135M-Instruct.
        method: one of `METHODS`.
        peft: keyword arguments of the method's `llmlab.peft` config class (e.g. `{r: 8, lora_alpha: 16}`).
        partial: settings of `method: partial`.
        data: the data sets and how they are rendered.
        train: the loop.
        optim: the optimizer.
        schedule: the lr schedule.
        classification: label words for accuracy logging.
        out_dir: the run folder.
        overwrite: replace an existing `out_dir` (its old contents are deleted when the new run starts).
        resume: continue `out_dir/checkpoints/last` (the `--resume` option); the settings that define the run
            (base, method, peft, partial, data, train.seed) must be those of the checkpoint.
    """

    base: str | None = None
    method: str = "lora"
    peft: dict[str, Any] = field(default_factory=dict)
    partial: PartialConfig = field(default_factory=PartialConfig)
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=2e-4, weight_decay=0.0, betas=[0.9, 0.999]))
    schedule: ScheduleConfig = field(default_factory=lambda: ScheduleConfig(warmup_iters=10, min_lr=0.0))
    classification: ClassificationConfig = field(default_factory=ClassificationConfig)
    out_dir: str = "runs/finetune"
    overwrite: bool = False
    resume: bool = False

    def validate(self) -> None:
        """Raise a one-line ValueError for impossible settings."""
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of: {', '.join(METHODS)}")
        d = self.data
        if d.template not in TEMPLATE_NAMES:
            raise ValueError(f"unknown data.template {d.template!r}; choose one of: {', '.join(TEMPLATE_NAMES)}")
        if d.format not in RECORD_FORMATS:
            raise ValueError(f"unknown data.format {d.format!r}; choose one of: {', '.join(RECORD_FORMATS)}")
        if d.max_length < 2:
            raise ValueError(f"data.max_length must be >= 2, got {d.max_length}")
        if not d.train and not d.tasks:
            raise ValueError("no training data: set data.train=<file.jsonl> (or data.tasks)")
        if d.train and d.tasks:
            raise ValueError("set either data.train or data.tasks, not both")
        names = [t.name for t in d.tasks]
        if any(not n for n in names) or len(set(names)) != len(names):
            raise ValueError(f"every entry of data.tasks needs a unique name, got {names}")
        if any(not t.path for t in d.tasks):
            raise ValueError("every entry of data.tasks needs a path")
        if self.method == "partial" and not self.partial.modules and self.partial.last_n_layers <= 0:
            raise ValueError("method partial needs partial.modules=[...] or partial.last_n_layers=N")
        if self.method not in PEFT_METHODS and self.peft:
            raise ValueError(f"peft settings are only for {', '.join(PEFT_METHODS)}, not method {self.method!r}")
        if self.method in PEFT_METHODS:
            _check_peft_keys(self.method, dict(self.peft))
        if d.packing and self.method == "prompt":
            raise ValueError(
                "packing does not work with prompt tuning (the soft prompt would be shared); set data.packing=false"
            )
        self.train.validate()
        if self.optim.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.optim.lr}")
        if not 0 <= self.schedule.min_lr <= self.optim.lr:
            raise ValueError(f"schedule.min_lr ({self.schedule.min_lr}) must be between 0 and optim.lr")


def _check_peft_keys(method: str, peft: dict[str, Any]) -> None:
    """ValueError naming unknown keys of the `peft:` section for `method` (and the valid ones)."""
    from llmlab.peft import config as peft_config

    valid = {f.name for f in dataclasses.fields(getattr(peft_config, PEFT_METHODS[method]))}
    unknown = sorted(set(peft) - valid)
    if unknown:
        raise ValueError(
            f"unknown peft setting(s) for method {method}: {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
        )


def load_finetune_config(
    path: str | os.PathLike | None, overrides: list[str] | None = None, method: str | None = None
) -> FinetuneConfig:
    """Defaults, then the YAML, then `key=value` overrides; `method` (the --method option) wins over all."""
    overrides = list(overrides or [])
    if method is not None:
        overrides.append(f"method={method}")
    return load_config(FinetuneConfig, path, overrides)


# ---------------------------------------------------------------------------------------------- pieces
def apply_method(model: Any, cfg: FinetuneConfig, base_name: str, tokenizer: Any = None) -> str:
    """Make the right parameters trainable (adding adapters for PEFT methods); return a one-line report.

    Prompt and prefix tuning initialised from text (`prompt_tuning_init: TEXT` + `prompt_tuning_init_text`,
    `prefix_tuning_init: TEXT` + `prefix_tuning_init_text`) get the text's `init_token_ids` from `tokenizer`.
    """
    from llmlab import peft

    if cfg.method == "full":
        model.requires_grad_(True)
    elif cfg.method == "partial":
        if cfg.partial.modules:
            peft.freeze_except(model, list(cfg.partial.modules))
        else:
            peft.train_last_n_layers(model, cfg.partial.last_n_layers, cfg.partial.include_head)
    else:
        cls = getattr(peft, PEFT_METHODS[cfg.method])
        kwargs = {"base_model_name_or_path": base_name, **dict(cfg.peft)}
        if isinstance(kwargs.get("target_modules"), tuple):
            kwargs["target_modules"] = list(kwargs["target_modules"])
        text = kwargs.get(f"{cfg.method}_tuning_init_text")
        if text and not kwargs.get("init_token_ids") and tokenizer is not None:
            kwargs["init_token_ids"] = tokenizer.encode(text)
        peft.get_peft_model(model, cls(**kwargs))
    trainable, total = peft.count_parameters(model)
    return f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"


def _tasks(cfg: FinetuneConfig) -> list[TaskConfig]:
    d = cfg.data
    if d.tasks:
        return list(d.tasks)
    return [TaskConfig(name="train", path=str(d.train), val_path=d.val)]


def _virtual_tokens(cfg: FinetuneConfig) -> int:
    """Positions prompt/prefix tuning put before the real tokens (they count against the model's context)."""
    from llmlab import peft

    if cfg.method not in ("prompt", "prefix"):
        return 0
    cls = getattr(peft, PEFT_METHODS[cfg.method])
    return int(cfg.peft.get("num_virtual_tokens", cls.num_virtual_tokens))


def write_tokenizer(tokenizer: Any, directory: Path, chat_template: str | None) -> None:
    """`tokenizer.json` + `tokenizer_config.json` (with the chat template, as `llmlab convert` writes it)."""
    tokenizer.save(directory)
    if chat_template:
        sidecar = directory / "tokenizer_config.json"
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        meta["chat_template"] = chat_template
        sidecar.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def label_accuracy(model: Any, tokenizer: Any, examples: list[Any], labels: list[str]) -> tuple[float, int]:
    """Accuracy of picking the most likely label word after each example's prompt: (accuracy, examples scored).

    The gold label of an example is the label whose tokens begin its response (examples whose response is no
    label are skipped).
    """
    from llmlab.models.heads import label_log_likelihoods

    label_ids = [tokenizer.encode(lab) for lab in labels]
    correct = scored = 0
    for ex in examples:
        response = ex.input_ids[ex.prompt_len :]
        matches = [i for i, ids in enumerate(label_ids) if ids and response[: len(ids)] == ids]
        if not matches:
            continue
        gold = max(matches, key=lambda i: len(label_ids[i]))
        scores = label_log_likelihoods(model, ex.input_ids[: ex.prompt_len], label_ids)
        correct += int(int(scores.argmax()) == gold)
        scored += 1
    return (correct / scored if scored else float("nan")), scored


# ---------------------------------------------------------------------------------------------- run folder
def _run_identity(cfg: FinetuneConfig) -> dict[str, Any]:
    """What a checkpoint must have been made from to be resumed with `cfg` (JSON primitives)."""
    d = json.loads(json.dumps(dataclasses.asdict(cfg)))
    return {k: d[k] for k in ("base", "method", "peft", "partial", "data")} | {"train": {"seed": d["train"]["seed"]}}


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"data": {"packing": True}} -> {"data.packing": True} (empty sections vanish)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def check_resume(saved: dict[str, Any], now: dict[str, Any], run_dir: Path) -> None:
    """Raise one line naming the first setting in which `now` differs from the checkpoint's `run` record.

    Raises:
        ValueError: e.g. `cannot resume runs/x: method is 'full' in its checkpoint but 'lora' now; ...`.
    """
    a, b = _flatten(saved), _flatten(now)
    for key in sorted(set(a) | set(b), key=lambda k: (k == "data_sha256", k)):
        if a.get(key, "(not set)") == b.get(key, "(not set)"):
            continue
        if key == "data_sha256":
            what = "the training data changed (its tokenized examples differ from the checkpoint's)"
        else:
            what = f"{key} is {a.get(key, '(not set)')!r} in its checkpoint but {b.get(key, '(not set)')!r} now"
        raise ValueError(
            f"cannot resume {run_dir}: {what}; resume with the run's settings (see its config.yaml) "
            "or start a new run (another out_dir, or overwrite=true)"
        )


def _prepare_run_dir(cfg: FinetuneConfig) -> dict[str, Any] | None:
    """Check `out_dir` against resume / overwrite (nothing is written); returns the trainer state to resume."""
    from llmlab.train.checkpoint import find_checkpoint, load_trainer_state

    out = Path(cfg.out_dir)
    last = out / "checkpoints" / "last"
    has_ckpt = find_checkpoint(last) is not None  # repairs what a kill during a save left
    if cfg.resume:
        if not has_ckpt:
            raise FileNotFoundError(
                f"--resume: no checkpoint at {last}; run without --resume to start a new run "
                "(train.save_interval=N saves one every N steps)"
            )
        state = load_trainer_state(last)
        check_resume({k: v for k, v in state.get("run", {}).items() if k != "data_sha256"}, _run_identity(cfg), out)
        if int(state["iter"]) >= cfg.train.max_iters:
            raise ValueError(
                f"{out} already finished: its checkpoint is at step {int(state['iter'])} of train.max_iters="
                f"{cfg.train.max_iters} (outputs in {out}); raise train.max_iters to train further"
            )
        return state
    if out.exists() and not cfg.overwrite:
        hint = "pass --resume to continue it, " if has_ckpt else ""
        raise ValueError(f"{out} already exists; {hint}choose another out_dir or pass overwrite=true")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / "config.yaml").is_file())):
        raise ValueError(f"overwrite=true would delete {out}, which is not a llmlab run folder; choose another out_dir")
    return None


def _replace_dir(tmp: Path, final: Path) -> None:
    """Move the finished folder `tmp` to `final`, replacing what is there."""
    os.chmod(tmp, 0o755)  # mkdtemp creates 0700
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _write_outputs(model: Any, tokenizer: Any, cfg: FinetuneConfig, base_name: str, chat_template: Any) -> str:
    """The run's results, each written atomically: tokenizer files and `adapter/` or `model/`. Returns its path."""
    out = Path(cfg.out_dir)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".tmp-outputs-"))
    try:
        write_tokenizer(tokenizer, tmp, chat_template)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out / f.name)
        if cfg.method in PEFT_METHODS:
            from llmlab.peft import save_adapter

            local = Path(base_name)
            recorded = str(local.resolve()) if local.exists() else base_name  # found again from any directory
            save_adapter(model, out / "adapter", base_model_name_or_path=recorded)  # atomic
            return str(out / "adapter")
        from llmlab.models import save_llmlab

        save_llmlab(model, tmp / "model")
        write_tokenizer(tokenizer, tmp / "model", chat_template)
        _replace_dir(tmp / "model", out / "model")
        return str(out / "model")
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
    With `cfg.resume`, continues `out_dir/checkpoints/last` exactly.

    Raises:
        ValueError / FileNotFoundError: one line naming the problem (bad data line, unknown target module,
            existing out_dir, a resume with other settings, ...). A run that fails before its first checkpoint
            leaves no `out_dir` behind; one that fails later keeps it, to be continued with `--resume`.
    """
    from llmlab.train.distributed import barrier, cleanup, init_distributed
    from llmlab.train.precision import resolve_device

    ctx = init_distributed(cfg.train.distributed, resolve_device(cfg.train.device).type)
    try:
        summary = _finetune(cfg, ctx, say if ctx.is_main else (lambda _msg: None))
        barrier(ctx)  # every rank's last collective is done before the process group goes away
        return summary
    finally:
        cleanup(ctx)


def _finetune(cfg: FinetuneConfig, ctx: Any, say: Any) -> dict[str, Any]:
    import torch

    from llmlab.data.sft import SFTBatchStream, eval_batches, examples_fingerprint, load_sft_examples, split_examples
    from llmlab.generate.checkpoint import find_adapter_dir, load_for_inference
    from llmlab.train.checkpoint import find_checkpoint
    from llmlab.train.distributed import barrier
    from llmlab.train.logging import write_json_atomic
    from llmlab.train.sft_loop import load_trainable, run_sft

    out = Path(cfg.out_dir)
    last = out / "checkpoints" / "last"
    resume_state = _prepare_run_dir(cfg)
    tasks = _tasks(cfg)
    for t in tasks:  # fail on a missing file before loading a model
        for p in (t.path, t.val_path):
            if p and not Path(p).is_file():
                raise FileNotFoundError(f"data file not found: {p}")

    torch.manual_seed(cfg.train.seed)
    if cfg.base is not None and Path(cfg.base).is_dir() and find_adapter_dir(Path(cfg.base)) is not None:
        raise ValueError(
            f"base={cfg.base} is an adapter on a base model; fold it in first (llmlab merge --adapter "
            f"{find_adapter_dir(Path(cfg.base))} --out merged) and fine-tune the merged folder"
        )
    loaded = load_for_inference(cfg.base)
    model, tokenizer = loaded.model, loaded.tokenizer
    base_name = cfg.base or DEFAULT_BASE_NAME
    chat_template = cfg.data.chat_template or loaded.chat_template
    d = cfg.data
    max_length = min(d.max_length, model.config.block_size - _virtual_tokens(cfg))

    train_sets, val_sets, dropped = [], [], 0
    for k, t in enumerate(tasks):
        kw = dict(
            fmt=t.format or d.format,
            template=t.template or d.template,
            chat_template=chat_template,
            max_length=max_length,
            train_on_prompt=d.train_on_prompt,
            add_bos=d.add_bos,
            add_eos=d.add_eos,
            task=k,
        )
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
    run_info = {**_run_identity(cfg), "data_sha256": examples_fingerprint(train_sets)}
    if resume_state is not None:
        check_resume(resume_state.get("run", {}), run_info, out)

    report = apply_method(model, cfg, base_name, tokenizer)
    say(f"{cfg.method} fine-tuning of {base_name}: {report}")
    if resume_state is not None:
        load_trainable(model, last)
    pad_id = next((i for i in (tokenizer.pad_id, tokenizer.eos_id) if i is not None), 0)
    stream = SFTBatchStream(
        train_sets,
        [t.weight for t in tasks],
        cfg.train.batch_size,
        max_length,
        pad_id,
        d.packing,
        cfg.train.seed,
        rank=ctx.rank,
        world_size=ctx.world_size,
    )
    val_all = [ex for v in val_sets for ex in v]

    def val_batches():  # noqa: ANN202
        return eval_batches(val_all, cfg.train.eval_batch_size, pad_id)

    extra_eval = None
    if cfg.classification.labels:

        def extra_eval(m: Any) -> dict[str, float]:
            acc, n = label_accuracy(m, tokenizer, val_all, list(cfg.classification.labels))
            return {"val_accuracy": acc, "val_scored": n}

    barrier(ctx)  # every rank has checked out_dir before rank 0 changes it
    if ctx.is_main:
        if resume_state is None and out.exists():  # overwrite=true: start over
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        save_config(dataclasses.replace(cfg, resume=False), out / "config.yaml")
    barrier(ctx)
    try:
        summary = run_sft(
            model,
            stream,
            cfg.train,
            cfg.optim,
            cfg.schedule,
            out,
            task_names=[t.name for t in tasks],
            val_batches=val_batches if val_all else None,
            extra_eval=extra_eval if val_all else None,
            say=say,
            ctx=ctx,
            checkpoint_dir=last,
            resume_state=resume_state,
            run_info=run_info,
        )
        if ctx.is_main:
            model.to("cpu")
            summary["adapter" if cfg.method in PEFT_METHODS else "model"] = _write_outputs(
                model, tokenizer, cfg, base_name, chat_template
            )
            summary.update(
                method=cfg.method,
                base=base_name,
                trainable=report,
                train_examples=[len(s) for s in train_sets],
                val_examples=[len(v) for v in val_sets],
                checkpoint=str(last),
                out_dir=str(out),
            )
            write_json_atomic(out / "summary.json", summary)
            say(describe(summary))
        barrier(ctx)
    except BaseException:
        # A new run (or one started over with overwrite=true) that fails before its first checkpoint leaves
        # nothing; a resumed run always has its checkpoint, so its folder stays.
        if ctx.is_main and resume_state is None and find_checkpoint(last, repair=False) is None:
            shutil.rmtree(out, ignore_errors=True)  # nothing to resume: leave nothing behind
        raise
    return summary
