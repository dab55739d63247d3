"""Atomic file writes and atomic folder replacement, with one file-permission policy.

Permission policy: everything llmlab writes is readable by others unless the user's umask says otherwise —
files get ``0o666 & ~umask`` (0644 with the usual umask 022), folders ``0o777 & ~umask`` (0755). ``mkstemp`` and
``mkdtemp`` create 0600/0700 entries, so every helper here chmods before publishing.

Atomicity: a file is written to a temp file beside its target, flushed and fsynced, then renamed over the target
(``os.replace``), so a reader sees the old file or the new one, never half of one. A folder is built under a temp
name beside its target and swapped in by `replace_path`: on Linux one ``renameat2(RENAME_EXCHANGE)`` system call
swaps the two names atomically, so the target name always holds a complete folder; elsewhere the old folder is
renamed aside first (a short window that `replace_path` documents and callers that need more can recover from).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """Mode for files llmlab writes: 0o666 minus the user's umask (0644 with umask 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """Mode for folders llmlab creates: 0o777 minus the user's umask (0755 with umask 022)."""
    return 0o777 & ~_umask()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` for a temp file beside `path`, fsync it, give it `file_mode()` and rename it to `path`.

    On any exception (or Ctrl-C) the temp file is removed and `path` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see `atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """Write `obj` as JSON (UTF-8, non-ASCII kept, trailing newline) to `path` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


def read_json(path: str | os.PathLike, fix: str = "") -> Any:
    """The JSON in the UTF-8 file `path`; a file that is not valid JSON raises one-line ValueError naming it
    (followed by `; fix` when given, e.g. "re-save the model").

    Raises:
        FileNotFoundError / OSError: the file cannot be read (callers check existence first, with their own hint).
    """
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}){'; ' + fix if fix else ''}") from None


def json_safe(value: Any) -> Any:
    """`value` with NaN floats (e.g. the standard error of one example) replaced by None, so the JSON is strict."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def read_jsonl_records(path: str | os.PathLike, fix: str = "fix or remove the line") -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed JSON) for every non-blank line of the UTF-8 JSONL file `path`.

    Raises:
        FileNotFoundError / OSError: the file cannot be read (callers check existence first, with their own hint).
        ValueError: `<path> line N: not valid JSON (...); <fix>`.
    """
    with Path(path).open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {lineno}: not valid JSON ({e.msg}); {fix}") from None


def make_temp_dir(beside: str | os.PathLike, tag: str = "tmp") -> Path:
    """A new empty folder next to `beside` (same file system, so it can be renamed onto it), with `dir_mode()`."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=beside.parent, prefix=f".{beside.name}.{tag}-"))
    os.chmod(tmp, dir_mode())
    return tmp


def _load_renameat2() -> Callable[[str, str], bool] | None:
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return None
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def exchange(a: str, b: str) -> bool:
        rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
        return rc == 0

    return exchange


_exchange = _load_renameat2()


def exchange_paths(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Swap the names `a` and `b` in one atomic system call (Linux ``renameat2``); False where unsupported."""
    return _exchange is not None and _exchange(str(a), str(b))


def replace_path(new: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Move the finished file or folder `new` onto `dst`, replacing what is there, then delete the old one.

    Callers decide *whether* `dst` may be replaced (see `llmlab.io.outputs`); this only does it safely. `new`
    must be on the same file system (make it with `make_temp_dir(dst)`). When `dst` is a folder, the two are
    exchanged atomically where the OS allows it, so `dst` names a complete folder at every instant; otherwise
    the old folder is renamed to ``.<name>.old-<pid>`` first and removed last.
    """
    new, dst = Path(new), Path(dst)
    if not dst.exists() and not dst.is_symlink():
        os.replace(new, dst)
        _fsync_dir(dst.parent)
        return dst
    if dst.is_dir() and not dst.is_symlink():
        if exchange_paths(new, dst):
            _fsync_dir(dst.parent)
            shutil.rmtree(new, ignore_errors=True)  # `new` now names the old folder
            return dst
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(new, dst)
        _fsync_dir(dst.parent)
        shutil.rmtree(old, ignore_errors=True)
        return dst
    os.replace(new, dst)  # a file (or link) is replaced by rename atomically
    _fsync_dir(dst.parent)
    return dst


@contextlib.contextmanager
def building_dir(dst: str | os.PathLike, publish: Callable[[Path, Path], object] | None = None) -> Iterator[Path]:
    """Build a folder under a temporary name beside `dst`; move it onto `dst` when the block ends normally.

        with building_dir(out) as tmp:      # a new empty folder beside `out`
            write_everything_into(tmp)      # any exception (or Ctrl-C) deletes `tmp`; `out` stays untouched

    `publish(tmp, dst)` does the move (default `replace_path`; `llmlab.io.building_output(dst, verb)` publishes
    with the verb's output marker).
    """
    dst = Path(dst)
    tmp = make_temp_dir(dst)
    try:
        yield tmp
        (publish or replace_path)(tmp, dst)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
