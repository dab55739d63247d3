"""Paths recorded in metadata files (an adapter's `base_model_name_or_path`, a run's `data.dir`), resolved safely.

A path written into a metadata file was usually typed relative to the working directory of the command that
wrote it. Reading it back, llmlab looks first relative to the folder that holds the metadata (so a run or an
adapter can be moved together with what it names), then relative to the working directory (what older
versions did), and always says which one it used: every resolution returns a one-line note that the loader
keeps in `Source.notes` and the CLI prints. Nothing found is a FileNotFoundError naming the file and the key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class MetadataPath:
    """A path read from a metadata file and where it was found.

    Attributes:
        path: the existing path that was used.
        note: one line for the user, e.g. "base model '../base' (adapter_config.json) -> /runs/base, relative to
            the adapter folder".
    """

    path: Path
    note: str


def resolve_metadata_path(value: str, holders: list[tuple[Path, str]], what: str) -> MetadataPath | None:
    """Resolve the recorded path `value`; None when it names nothing that exists.

    Args:
        value: the path as written in the metadata file.
        holders: (folder, how to call it) pairs to try first, closest first, e.g. [(adapter_dir, "the adapter
            folder"), (run_dir, "the run folder")]; the working directory is tried after them.
        what: what the path is and where it was read, e.g. "base model (base_model_name_or_path in
            runs/sft/adapter/adapter_config.json)".
    """
    recorded = Path(value)
    if recorded.is_absolute():
        if not recorded.exists():
            return None
        return MetadataPath(recorded, f"{what}: '{value}' (an absolute path, used as recorded)")
    for folder, name in holders:
        candidate = folder / recorded
        if candidate.exists():
            return MetadataPath(candidate, f"{what}: '{value}' -> {candidate} (relative to {name})")
    candidate = Path.cwd() / recorded
    if candidate.exists():
        tried = ", ".join(name for _, name in holders) or "its folder"
        return MetadataPath(
            candidate, f"{what}: '{value}' -> {candidate} (not beside {tried}; relative to the working directory)"
        )
    return None
