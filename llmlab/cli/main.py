"""The `llmlab` command: dispatch only. Each command group lives in its own module and registers itself.

Error policy (docs/reliability.md): whatever escapes a verb is printed as ONE line on stderr,
``llmlab: error: <what went wrong, naming the path> <how to fix it>``, and the exit status is 2 — never a
traceback. That covers the user mistakes the verbs raise themselves (ValueError, FileNotFoundError, ...) and the
operating-system and encoding errors no verb can foresee everywhere: permission denied, a path under a regular
file, a folder where a file was expected, a full disk, a read-only file system, a file that is not UTF-8.
Ctrl-C prints ``llmlab: interrupted`` and exits 130. Set ``LLMLAB_DEBUG=1`` to get the full traceback instead.
"""

from __future__ import annotations

import errno
import io
import os
import re
import sys
from types import TracebackType

import typer

from llmlab.cli import (
    align,
    average,
    chat,
    convert,
    data,
    distill,
    embed,
    evaluate,
    finetune,
    generate,
    peft_compare,
    pretrain,
    prune,
    quantize,
    quickstart,
    serve,
    tokenizer,
)
from llmlab.cli import (
    app as app_cmd,
)

app = typer.Typer(
    name="llmlab",
    help="llmlab: build a tokenizer and corpus, pretrain, generate and evaluate LLMs on a laptop CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (quickstart, tokenizer, data, pretrain, finetune, peft_compare, generate, chat, evaluate, convert):
    module.register(app)
average.register(app)
serve.register(app)
for module in (quantize, prune, distill, align, embed, app_cmd):
    module.register(app)

USER_ERRORS = (ValueError, KeyError, OSError)  # OSError covers FileNotFoundError, PermissionError, ...
DEBUG_HINT = "set LLMLAB_DEBUG=1 for the traceback"

# errno -> (what it means, how to fix it); `{path}` is the file the operating system named.
_OS_FIXES: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied: {path}", "choose a path you may read/write, or change its permissions"),
    errno.EPERM: ("operation not permitted on {path}", "choose a path you may write, or change its permissions"),
    errno.ENOENT: ("no such file or folder: {path}", "check the path"),
    errno.ENOTDIR: (
        "{path}: a part of this path is a file, not a folder",
        "choose a path whose parent folders are folders",
    ),
    errno.EISDIR: ("{path} is a folder where a file was expected", "pass a file path"),
    errno.ENOSPC: ("no space left on the device while writing {path}", "free some space or write elsewhere"),
    errno.EDQUOT: ("disk quota exceeded while writing {path}", "free some space or write elsewhere"),
    errno.EROFS: ("{path} is on a read-only file system", "write to another location"),
    errno.EEXIST: ("{path} already exists", "choose another path"),
    errno.EFBIG: ("file too large while writing {path} (file-size limit or full file system)", "write elsewhere"),
    errno.EIO: ("input/output error on {path}", "check the disk or the device the path is on"),
    errno.ENOTEMPTY: ("{path} is a folder that is not empty", "choose another path"),
    errno.ENAMETOOLONG: ("file name too long: {path}", "choose a shorter path"),
    errno.EMFILE: ("too many open files while opening {path}", "raise the limit (ulimit -n) or use fewer files"),
}


# Libraries written in Rust (safetensors, tokenizers) raise their own exception types for OS errors; the
# message ends with "(os error N)", e.g. "Error while serializing: I/O error: File too large (os error 27)".
_FOREIGN_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def foreign_os_errno(e: BaseException) -> int | None:
    """The errno inside a non-OSError exception that wraps an operating-system error, else None."""
    match = None if isinstance(e, OSError) else _FOREIGN_OS_ERROR.search(str(e))
    return int(match.group(1)) if match else None


def _foreign_os_error_line(e: BaseException, code: int) -> str:
    fix = _OS_FIXES.get(code, ("", DEBUG_HINT))[1]
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return f"{os.strerror(code).lower()} while reading or writing a file ({detail}); {fix}"


def _os_error_line(e: OSError) -> str:
    """One line for an OSError: the verb's own message, or the OS's error with the path and a fix."""
    if e.errno is None or e.strerror is None:  # raised by llmlab with its own message
        return str(e.args[0] if e.args else e).strip() or type(e).__name__
    path = e.filename if e.filename is not None else _file_in_traceback(e.__traceback__)
    if e.filename2 is not None:
        path = f"{e.filename} -> {e.filename2}"
    what, fix = _OS_FIXES.get(e.errno, (f"{e.strerror}: {{path}}", DEBUG_HINT))
    if path is None:  # no file name anywhere: say what happened and where to look
        return f"{e.strerror.lower()} while reading or writing a file; {fix} ({DEBUG_HINT} to see which)"
    return f"{what.format(path=path)}; {fix}"


def _file_in_traceback(tb: TracebackType | None) -> str | None:
    """The name of the file that the innermost frames of `tb` were reading or writing, if one can be told.

    A UnicodeDecodeError, and an OSError raised by ``read()``/``write()`` on an open file, carry no file name.
    The failing call happens in C, so the innermost Python frame is the one that called it (ours, or pathlib's
    ``read_text``): a file object among its locals names the file, and a frame that reads ``sys.stdin`` means
    standard input (``"<stdin>"``).
    """
    frames = []
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        in_decoder = filename.endswith(("codecs.py", "<frozen codecs>")) or f"{os.sep}encodings{os.sep}" in filename
        if not in_decoder:
            frames.append(tb.tb_frame)
        tb = tb.tb_next
    for depth, frame in enumerate(reversed(frames)):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                return value.name
        if depth == 0 and "stdin" in frame.f_code.co_names:
            return "<stdin>"
    return None


def _unicode_error_line(e: UnicodeDecodeError) -> str:
    """One line for a UnicodeDecodeError that a verb did not turn into its own message."""
    where = f"byte 0x{e.object[e.start]:02x} at offset {e.start}" if e.start < len(e.object) else f"offset {e.start}"
    name = _file_in_traceback(e.__traceback__)
    if name == "<stdin>":
        return f"standard input is not valid {e.encoding} text ({where}); pipe UTF-8 text"
    if name is not None:
        return f"{name} is not valid {e.encoding} text ({where}); convert it to UTF-8 first"
    return f"an input is not valid {e.encoding} text ({where}); convert it to UTF-8 first ({DEBUG_HINT})"


def error_line(e: BaseException) -> str:
    """The one line printed after ``llmlab: error:`` for an exception that escaped a verb."""
    code = foreign_os_errno(e)
    if code is not None:
        msg = _foreign_os_error_line(e, code)
    elif isinstance(e, UnicodeDecodeError):
        msg = _unicode_error_line(e)
    elif isinstance(e, OSError):
        msg = _os_error_line(e)
    elif isinstance(e, KeyError):  # str(KeyError) wraps the message in quotes; the message itself is args[0]
        msg = str(e.args[0] if e.args else e)
    else:
        msg = str(e)
    msg = msg.strip() or type(e).__name__
    return msg.splitlines()[0]


def _debug() -> bool:
    """LLMLAB_DEBUG=1 (any value but empty or 0) lets tracebacks through."""
    return os.environ.get("LLMLAB_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """Entry point for the `llmlab` console script and `python -m llmlab`."""
    try:
        app(args=argv, prog_name="llmlab")
    except USER_ERRORS as e:  # UnicodeDecodeError is a ValueError
        if _debug():
            raise
        print(f"llmlab: error: {error_line(e)}", file=sys.stderr)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - only OS errors wrapped by Rust libraries; anything else re-raised
        if _debug() or foreign_os_errno(e) is None:
            raise
        print(f"llmlab: error: {error_line(e)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        if _debug():
            raise
        print("llmlab: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130:  # Ctrl-C caught by typer/click, which exits 130 silently
            print("llmlab: interrupted", file=sys.stderr)
        raise
