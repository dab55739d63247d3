"""The output-folder policy that every writing verb follows (documented in docs/reliability.md).

1. llmlab writes a marker file, `OUTPUT_MARKER`, into every folder it creates as an output (a run folder, a
   converted or merged model, a prepared corpus, a tokenizer folder).
2. It replaces or deletes only a folder that carries that marker, and only when the user asked for it
   (``--overwrite`` / ``overwrite=true``); an existing folder without the marker is refused unless it is empty.
3. It never writes into a folder that contains one of its inputs, nor into a folder inside an input.
4. All of this is checked by `check_output_dir` before anything is loaded or written, and fails with one
   line that names the path and the way out (another output path, or the overwrite flag).
5. A single-file output (a `.gguf`) follows `check_output_file`: never an input, and replaced (with the
   overwrite flag) only when the existing file is of the kind llmlab writes there (its magic bytes).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Iterable
from pathlib import Path

from llmlab.io.files import atomic_write_text, building_dir, replace_path

OUTPUT_MARKER = ".llmlab-output"


def is_llmlab_output(folder: str | os.PathLike) -> bool:
    """True when `folder` is a folder llmlab created (it holds `OUTPUT_MARKER`)."""
    return (Path(folder) / OUTPUT_MARKER).is_file()


def mark_output(folder: str | os.PathLike, verb: str) -> None:
    """Record in `folder` that llmlab's `verb` created it (so a later ``--overwrite`` may replace it)."""
    atomic_write_text(Path(folder) / OUTPUT_MARKER, json.dumps({"created_by": f"llmlab {verb}"}) + "\n")


def _is_within(child: Path, parent: Path) -> bool:
    try:
        child.relative_to(parent)
        return True
    except ValueError:
        return False


def _input_clash(
    target: Path, sources: Iterable[str | os.PathLike | None], *, contains: bool
) -> str | os.PathLike | None:
    """The first input that the resolved output `target` is, lies inside, or (`contains`) contains; else None."""
    for src in sources:
        if src is None:
            continue
        s = Path(src).resolve()
        if target == s or _is_within(target, s) or (contains and _is_within(s, target)):
            return src
    return None


def check_output_dir(
    dst: str | os.PathLike,
    *,
    overwrite: bool,
    sources: Iterable[str | os.PathLike | None] = (),
    flag: str = "--out",
    overwrite_flag: str = "--overwrite",
) -> Path:
    """Decide, before anything is written, whether the output folder `dst` may be used; return it resolved.

    Args:
        dst: the output folder.
        overwrite: the user asked to replace an existing output.
        sources: the verb's inputs; `dst` may not be one of them, contain one, or lie inside one.
        flag / overwrite_flag: the command's option names, for the error message.

    Raises:
        ValueError: one line naming `dst` and what to do instead.
    """
    dst = Path(dst)
    target = dst.resolve()
    clash = _input_clash(target, sources, contains=True)
    if clash is not None:
        raise ValueError(
            f"{dst} would overwrite the input {clash} (it is, contains or lies inside it); choose another {flag}"
        )
    if dst.is_symlink() or (dst.exists() and not dst.is_dir()):
        raise ValueError(f"{dst} exists and is not a folder; choose another {flag}")
    if not dst.exists() or not any(dst.iterdir()):
        return target
    if not is_llmlab_output(dst):
        raise ValueError(
            f"{dst} is a non-empty folder that llmlab did not create; llmlab never replaces it — choose another {flag}"
        )
    if not overwrite:
        raise ValueError(
            f"{dst} already exists (an earlier llmlab output); choose another {flag} or pass {overwrite_flag}"
        )
    return target


def check_output_file(
    dst: str | os.PathLike,
    *,
    overwrite: bool,
    sources: Iterable[str | os.PathLike | None],
    flag: str,
    magic: bytes,
    overwrite_flag: str = "--overwrite",
) -> None:
    """The single-file form of `check_output_dir`: `dst` may not be an input nor lie inside one, and an existing
    `dst` is replaced only with `overwrite` and only when it starts with `magic` (a file of the kind llmlab writes
    there, e.g. a GGUF file) — never a folder, a link or another kind of file.

    Raises:
        ValueError: one line naming `dst` and what to do instead.
    """
    dst = Path(dst)
    clash = _input_clash(dst.resolve(), sources, contains=False)
    if clash is not None:
        raise ValueError(f"{dst} would overwrite the input {clash} (it is or lies inside it); choose another {flag}")
    if dst.is_symlink() or dst.is_dir():
        raise ValueError(f"{dst} exists and is not a {magic.decode()} file; choose another {flag}")
    if not dst.exists():
        return
    if not overwrite:
        raise ValueError(f"{dst} already exists; choose another {flag} or pass {overwrite_flag}")
    with open(dst, "rb") as f:
        if f.read(len(magic)) != magic:
            raise ValueError(
                f"{dst} is not a {magic.decode()} file, so llmlab never replaces it, even with {overwrite_flag}; "
                f"choose another {flag}"
            )


def publish_output(tmp: str | os.PathLike, dst: str | os.PathLike, verb: str) -> Path:
    """Mark the finished folder `tmp` as `verb`'s output and move it onto `dst` (replacing it atomically).

    Call `check_output_dir` first: this function does not re-check the policy.
    """
    mark_output(tmp, verb)
    return replace_path(tmp, dst)


def building_output(dst: str | os.PathLike, verb: str) -> contextlib.AbstractContextManager[Path]:
    """`llmlab.io.building_dir` for a verb's output folder: the finished folder is published with `verb`'s
    marker (`publish_output`). Call `check_output_dir` first."""
    return building_dir(dst, functools.partial(publish_output, verb=verb))
