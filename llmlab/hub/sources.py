"""What a model path is: `resolve_source(path) -> Source`, shared by every verb before anything is loaded.

| path                                        | kind           | weights                    | tokenizer             |
|---------------------------------------------|----------------|----------------------------|-----------------------|
| None                                        | `default`      | the packaged SmolLM2 GGUF  | GGUF metadata         |
| `x.gguf` (or a folder with exactly one)     | `gguf`         | the file                   | GGUF metadata         |
| llmlab folder (`model_config.json`)         | `checkpoint`   | the folder                 | searched (1)          |
| `llmlab pretrain` run (`checkpoints/last/`) | `pretrain-run` | `run/checkpoints/last/`    | searched (1)          |
| `llmlab finetune` run, full (`model/`)      | `finetune-run` | `run/model/`               | searched (1)          |
| Hugging Face folder (`config.json`)         | `hf`           | the folder                 | its `tokenizer.json`  |
| adapter folder (`adapter_config.json`)      | `adapter`      | its base's                 | the run's, else base's|
| `llmlab finetune` run with `adapter/`       | `adapter`      | its base's                 | the run's, else base's|

(1) checkpoint folder, run folder, the run's data folder: see `llmlab.hub.tokenizer_files`.

Only paths are looked at here (no weights are read), so a verb can check its output folder against every
input (`Source.inputs()`) before it loads anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmlab.hub.adapters import find_adapter_dir, resolve_adapter_base
from llmlab.hub.tokenizer_files import TOKENIZER_FILE, locate_tokenizer, run_dir_of
from llmlab.models import detect_format
from llmlab.models.smollm2 import DEFAULT_MODEL_NAME


@dataclass
class Source:
    """A model path resolved to what it holds.

    Attributes:
        path: the path as given (None: the packaged default model).
        kind: default | gguf | checkpoint | pretrain-run | finetune-run | hf | adapter (see the module table).
        format: how the weights are stored: llmlab | hf | gguf (an adapter: its base's format).
        weights: the folder (llmlab, hf) or file (gguf) holding the weights (an adapter: its base's).
        tokenizer_file: the `tokenizer.json` to use; None: in the GGUF metadata, or none was found.
        run_dir: the `llmlab pretrain`/`finetune` run folder the weights belong to, if any.
        adapter_dir: the adapter folder (adapter_config.json), if this is an adapter.
        base: an adapter's base model.
        notes: one line per path that was read from metadata (which file, which path was used).
        label: a short name for messages (the path, or the default model's name).
    """

    path: Path | None
    kind: str
    format: str
    weights: Path
    tokenizer_file: Path | None = None
    run_dir: Path | None = None
    adapter_dir: Path | None = None
    base: Source | None = None
    notes: list[str] = field(default_factory=list)
    label: str = ""

    def inputs(self) -> list[Path]:
        """Every file or folder this source reads (an output must not be, contain or lie inside any of them)."""
        own = [self.path, self.weights, self.run_dir, self.adapter_dir, self.tokenizer_file]
        found = [p for p in own if p is not None]
        return found + (self.base.inputs() if self.base is not None else [])

    @property
    def note(self) -> str | None:
        """The notes as one line (None when there are none)."""
        notes = [*(self.base.notes if self.base is not None else []), *self.notes]
        return "; ".join(dict.fromkeys(notes)) or None


def default_source() -> Source:
    """The packaged SmolLM2-135M-Instruct (FileNotFoundError with the pip command when it is not installed)."""
    from llmlab.models.smollm2 import smollm2_gguf_path

    return Source(None, "default", "gguf", smollm2_gguf_path(), label=DEFAULT_MODEL_NAME)


def resolve_source(path: str | Path | Source | None = None, *, base: str | Path | None = None) -> Source:
    """Resolve `path` (see the module table) without loading anything.

    Args:
        path: a model path, None (or the name `SmolLM2-135M-Instruct`, when no such folder exists here) for the
            packaged default, or an already resolved `Source` (returned as is).
        base: for an adapter (or a finetune run holding one): use this base model instead of the recorded one.

    Raises:
        FileNotFoundError: nothing at `path`, a folder holding no checkpoint, or an adapter whose base is missing.
        ValueError: a folder with several `.gguf` files, or `base` given for something that is not an adapter.
    """
    if isinstance(path, Source):
        return path
    if path is None:
        if base is not None:
            raise ValueError("a base model was given without an adapter; pass the adapter folder too")
        return default_source()
    path = Path(path)
    if not path.exists() and str(path) == DEFAULT_MODEL_NAME:  # the name adapters record for the default
        return resolve_source(None, base=base)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint not found: {path}; pass a .gguf file, a checkpoint/run folder or a Hugging Face folder"
        )
    adapter_dir = find_adapter_dir(path) if path.is_dir() else None
    if adapter_dir is not None:
        return _adapter_source(path, adapter_dir, base)
    if base is not None:
        raise ValueError(f"{path} is not an adapter (no adapter_config.json), so it takes no separate base model")
    try:
        fmt, located = detect_format(path)
    except FileNotFoundError:
        return _run_source(path)
    kind = {"gguf": "gguf", "hf": "hf"}.get(fmt, "checkpoint")
    source = Source(path, kind, fmt, located, label=str(path))
    if fmt == "hf":
        source.tokenizer_file = located / TOKENIZER_FILE if (located / TOKENIZER_FILE).is_file() else None
    elif fmt == "llmlab":
        source.tokenizer_file, source.notes = locate_tokenizer(located)
        source.run_dir = run_dir_of(located)
    return source


def _run_source(path: Path) -> Source:
    """A `llmlab finetune` run with `model/`, or a `llmlab pretrain` run with `checkpoints/last/`."""
    for sub, kind in (("model", "finetune-run"), ("checkpoints/last", "pretrain-run"), ("last", "pretrain-run")):
        located = path / sub
        if (located / "model_config.json").is_file():
            tokenizer_file, notes = locate_tokenizer(located)
            return Source(path, kind, "llmlab", located, tokenizer_file, path, notes=notes, label=str(path))
    raise FileNotFoundError(
        f"no model_config.json in {path} (nor in {path / 'checkpoints' / 'last'}); pass a checkpoint folder "
        "(llmlab, Hugging Face or .gguf) or a `llmlab pretrain`/`llmlab finetune` run folder"
    )


def _adapter_source(path: Path, adapter_dir: Path, base: str | Path | None) -> Source:
    """An adapter (or a finetune run holding `adapter/`) on its base model (`base`, else the recorded one)."""
    run_dir = path if adapter_dir != path else (adapter_dir.parent if run_dir_of(adapter_dir) else None)
    if base is not None:
        base_source, notes = resolve_source(base), []
    else:
        base_path, notes = resolve_adapter_base(adapter_dir, run_dir)
        base_source = resolve_source(base_path)
    if base_source.adapter_dir is not None:
        raise ValueError(
            f"the base model of the adapter {adapter_dir}, {base_source.label}, is itself an adapter; fold it in "
            f"first (llmlab merge --adapter {base_source.adapter_dir} --out merged) and use the merged folder"
        )
    tokenizer_file = base_source.tokenizer_file
    for folder in (adapter_dir, adapter_dir.parent):  # `llmlab finetune` writes the tokenizer beside adapter/
        if (folder / TOKENIZER_FILE).is_file():
            tokenizer_file = folder / TOKENIZER_FILE
            break
    return Source(
        path,
        "adapter",
        base_source.format,
        base_source.weights,
        tokenizer_file,
        run_dir,
        adapter_dir,
        base_source,
        notes,
        f"{base_source.label} + adapter {adapter_dir}",
    )
