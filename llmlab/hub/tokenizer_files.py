"""Where a checkpoint's tokenizer and chat template are, and writing them beside a saved model.

For an llmlab checkpoint the tokenizer is looked up in the checkpoint folder, then in the run folder around it
(a folder with `config.yaml`: `run/` for `run/checkpoints/last/` or `run/model/`), then in the data folder that
the run's `config.yaml` names (`data.dir`, where `llmlab data prepare` writes `tokenizer.json`; resolved by
`llmlab.hub.metadata`: relative to the run folder first, then the working directory, and reported).
A chat template is kept beside the tokenizer in `chat_template.jinja` or under `chat_template` in
`tokenizer_config.json` (the Hugging Face places).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from llmlab.hub.metadata import resolve_metadata_path
from llmlab.io import atomic_write_text, make_temp_dir, replace_path
from llmlab.io.files import read_json

TOKENIZER_FILE = "tokenizer.json"
RUN_CONFIG = "config.yaml"


def run_dir_of(checkpoint_dir: Path) -> Path | None:
    """The run folder around a checkpoint folder (parent or grandparent holding `config.yaml`), or None."""
    for folder in (checkpoint_dir.parent, checkpoint_dir.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder
    return None


def _run_data_dir(run_dir: Path) -> str | None:
    """`data.dir` as written in the run's `config.yaml` (None if absent or unreadable)."""
    try:
        cfg = yaml.safe_load((run_dir / RUN_CONFIG).read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return None
    data = cfg.get("data") if isinstance(cfg, dict) else None
    value = data.get("dir") if isinstance(data, dict) else None
    return str(value) if value else None


def locate_tokenizer(checkpoint_dir: Path) -> tuple[Path | None, list[str]]:
    """(the `tokenizer.json` for an llmlab checkpoint or None, notes on metadata paths that were followed)."""
    if (checkpoint_dir / TOKENIZER_FILE).is_file():
        return checkpoint_dir / TOKENIZER_FILE, []
    run_dir = run_dir_of(checkpoint_dir)
    if run_dir is None:
        return None, []
    if (run_dir / TOKENIZER_FILE).is_file():
        return run_dir / TOKENIZER_FILE, []
    data_dir = _run_data_dir(run_dir)
    if data_dir is None:
        return None, []
    found = resolve_metadata_path(
        data_dir, [(run_dir, "the run folder")], f"tokenizer from the data folder (data.dir in {run_dir / RUN_CONFIG})"
    )
    if found is None or not (found.path / TOKENIZER_FILE).is_file():
        return None, []
    return found.path / TOKENIZER_FILE, [found.note]


def find_tokenizer_file(checkpoint_dir: Path) -> Path:
    """Locate `tokenizer.json` for an llmlab checkpoint (see the module docstring for the search order).

    Raises:
        FileNotFoundError: none of the places holds one.
    """
    found, _ = locate_tokenizer(checkpoint_dir)
    if found is None:
        raise FileNotFoundError(missing_tokenizer_message(checkpoint_dir, "llmlab"))
    return found


def missing_tokenizer_message(folder: Path, fmt: str) -> str:
    """One line for a checkpoint without a tokenizer, by format."""
    if fmt == "hf":
        return f"no tokenizer.json in the Hugging Face folder {folder}; copy it there"
    if fmt == "gguf":
        return f"{folder} has no tokenizer in its metadata (tokenizer.ggml.*); use a GGUF file that carries one"
    return f"no tokenizer.json next to the checkpoint {folder}; copy the tokenizer.json used for training there"


def folder_chat_template(folder: Path) -> str | None:
    """A chat template stored beside a tokenizer: `chat_template.jinja`, or `chat_template` in tokenizer_config.json.

    Raises:
        ValueError: `tokenizer_config.json` is not valid JSON (names the file).
    """
    jinja = folder / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if not config.is_file():
        return None
    meta = read_json(config, "fix or delete it")
    template = meta.get("chat_template") if isinstance(meta, dict) else None
    return template if isinstance(template, str) and template else None


def save_tokenizer(tokenizer: Any, directory: Path, chat_template: str | None) -> None:
    """Write `tokenizer.json` + `tokenizer_config.json` (roles, and the chat template when there is one)."""
    tokenizer.save(directory)
    if chat_template:
        sidecar = directory / "tokenizer_config.json"
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
        meta["chat_template"] = chat_template
        atomic_write_text(sidecar, json.dumps(meta, indent=2, ensure_ascii=False) + "\n")


def save_model_folder(model: Any, tokenizer: Any, dst: Path, chat_template: str | None = None) -> Path:
    """Write `dst/` = an llmlab checkpoint (`model_config.json`, `model.safetensors`) with its tokenizer files,
    atomically: the folder is built beside `dst` and swapped in, so a kill leaves the old folder or the new one,
    never a mix of the two. The one writer of a run's final `model/` (finetune, seq2seq, pretraining objectives).
    """
    from llmlab.models import save_llmlab

    dst = Path(dst)
    tmp = make_temp_dir(dst)
    try:
        save_llmlab(model, tmp)
        save_tokenizer(tokenizer, tmp, chat_template)
        replace_path(tmp, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dst
