"""Every OS/encoding error that escapes a verb is one line `llmlab: error: ...` naming the path, exit 2.

Ctrl-C is one line and exit 130; LLMLAB_DEBUG=1 shows the traceback instead. The permission test needs a
non-root user (root may write into a read-only folder); the path-under-a-regular-file test runs everywhere.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmlab.cli.main import error_line, main

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False


def _llmlab(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmlab", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def _assert_one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> str:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("hello world\nthe cat sat on the mat\n", encoding="utf-8")
    return path


@pytest.mark.skipif(ROOT, reason="root writes into read-only folders; the path-under-a-file test covers OSError")
def test_read_only_output_folder_is_one_line(tmp_path: Path, corpus: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = _llmlab("tokenizer", "train", str(corpus), "--kind", "char", "--out", str(locked / "x"), cwd=tmp_path)
    finally:
        locked.chmod(0o755)
    line = _assert_one_line_error(proc, "permission denied", str(locked))
    assert "permissions" in line
    assert not (locked / "x").exists()


def test_output_under_a_regular_file_is_one_line(tmp_path: Path, corpus: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "notes.txt" / "tok"
    proc = _llmlab("tokenizer", "train", str(corpus), "--kind", "char", "--out", str(out), cwd=tmp_path)
    _assert_one_line_error(proc, "notes.txt", "is a file")
    assert (tmp_path / "notes.txt").read_text() == "mine\n"


def test_debug_shows_the_traceback(tmp_path: Path, corpus: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine\n")
    out = tmp_path / "notes.txt" / "tok"
    proc = _llmlab(
        "tokenizer", "train", str(corpus), "--kind", "char", "--out", str(out), cwd=tmp_path, env={"LLMLAB_DEBUG": "1"}
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def _run_main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    code = exc.value.code
    return (code if isinstance(code, int) else 1), capsys.readouterr().err


@pytest.mark.parametrize(
    ("raised", "needles"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/out/x"), ["permission denied: /data/out/x"]),
        (OSError(errno.ENOSPC, "No space left on device", "/data/out/x"), ["no space left", "/data/out/x"]),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/in"), ["/data/in is a folder"]),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/x"), ["/mnt/ro/x", "read-only"]),
        (OSError(errno.EXDEV, "Invalid cross-device link", "/a", None, "/b"), ["/a -> /b"]),
        (FileNotFoundError("tokenizer.json not found in /x; train one first"), ["tokenizer.json not found in /x"]),
    ],
)
def test_os_errors_from_a_verb_become_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    corpus: Path,
    tmp_path: Path,
    raised: OSError,
    needles: list[str],
) -> None:
    from llmlab.tokenizers import Tokenizer

    def fail(self: object, path: object) -> None:
        raise raised

    monkeypatch.delenv("LLMLAB_DEBUG", raising=False)
    monkeypatch.setattr(Tokenizer, "save", fail)
    code, err = _run_main(["tokenizer", "train", str(corpus), "--kind", "char", "--out", str(tmp_path / "t")], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: "), err
    for needle in needles:
        assert needle in lines[0]


def test_keyboard_interrupt_is_one_line_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], corpus: Path, tmp_path: Path
) -> None:
    import llmlab.recipes.corpus

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.delenv("LLMLAB_DEBUG", raising=False)
    monkeypatch.setattr(llmlab.recipes.corpus, "train_tokenizer", interrupted)
    code, err = _run_main(["tokenizer", "train", str(corpus), "--kind", "char", "--out", str(tmp_path / "t")], capsys)
    assert code == 130
    assert err.strip().splitlines() == ["llmlab: interrupted"]


def test_unicode_error_names_the_file_being_read(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9\n".encode("latin-1"))
    try:
        with open(bad, encoding="utf-8") as f:
            f.read()
    except UnicodeDecodeError as e:
        line = error_line(e)
    assert str(bad) in line and "0xe9" in line and "UTF-8" in line


def test_unicode_error_without_a_file_is_still_one_line() -> None:
    try:
        b"\xff\xfe\xfa".decode("utf-8")
    except UnicodeDecodeError as e:
        line = error_line(e)
    assert "not valid utf-8" in line and "\n" not in line and "LLMLAB_DEBUG" in line


def test_unicode_error_on_piped_stdin_is_one_line(tmp_path: Path) -> None:
    script = (
        "import sys, io\n"
        "sys.stdin = io.TextIOWrapper(sys.stdin.buffer, encoding='utf-8')\n"
        "from llmlab.cli.main import error_line\n"
        "try:\n"
        "    sys.stdin.read()\n"
        "except UnicodeDecodeError as e:\n"
        "    print(error_line(e))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], input=b"\xff\xfe hi\n", capture_output=True, timeout=60, cwd=tmp_path
    )
    assert proc.stdout.decode().startswith("standard input is not valid utf-8"), proc.stderr


def test_read_error_on_an_open_file_names_it(tmp_path: Path) -> None:
    target = tmp_path / "data.bin"
    target.write_bytes(b"x")
    try:
        with open(target, "rb") as f:
            f.read(1)
            raise OSError(errno.EIO, "Input/output error")  # what f.read() raises on a failing disk
    except OSError as e:
        line = error_line(e)
    assert str(target) in line and "input/output error" in line


def test_os_error_wrapped_by_a_rust_library_is_one_line(tmp_path: Path, corpus: Path) -> None:
    # safetensors reports a full disk as SafetensorError("... File too large (os error 27)"), not as an OSError
    import resource
    import signal

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    class Wrapped(Exception):
        pass

    line = error_line(Wrapped("Error while serializing: I/O error: File too large (os error 27)"))
    assert line.startswith("file too large while reading or writing a file (Error while serializing")
    assert "os error 27" in line
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "tokenizer", "train", str(corpus), "--kind", "char", "--out", "tk"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    _assert_one_line_error(proc, "file too large")
