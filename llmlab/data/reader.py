"""Documents as streams of bounded pieces, so that memory grows with `chunk_chars`, never with a file's size.

A text file is read in blocks; a document (a file, a paragraph, a line or a JSONL record, see
`llmlab.data.sources`) is yielded as a `StreamDocument` whose `pieces()` are (paragraph, separator) pairs,
exactly `split_paragraphs` of its text, except that a paragraph longer than `chunk_chars` is cut into
pieces of at most `chunk_chars` characters (each with separator "").

Where text is cut (`safe_cut`): preferably right after a newline that has non-space characters on both
sides, else right before a space between two non-space characters, else between two non-space characters.
The first two never change how byte-level BPE (GPT-2's pre-tokenizer regex), WordPiece, Unigram (Metaspace)
or character tokenizers split the text: no pre-token crosses such a point, so encoding the pieces one by one
gives exactly the ids of encoding the whole text. Only a run of more than `chunk_chars / 2` characters
without any line break or space (e.g. unbroken Chinese) is cut between two characters, where a BPE token
that would have spanned the cut is split in two (one extra token per cut).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from llmlab.data.sources import (
    _PARAGRAPH_BREAK,
    DEFAULT_EXTENSIONS,
    DOCUMENT_MODES,
    check_encoding,
    iter_jsonl,
    iter_text_blocks,
    resolve_sources,
)
from llmlab.tokenizers import Tokenizer, check_training_args, train_tokenizer_from_iterator

DEFAULT_CHUNK_CHARS = 1_000_000


def safe_cut(text: str, limit: int) -> int:
    """A cut position in `(limit // 2, limit]` (see the module docstring); `len(text)` if the text fits."""
    if len(text) <= limit:
        return len(text)
    low = limit // 2
    pos = text.rfind("\n", low, limit)
    while pos > low:  # cut after "\n" with non-space on both sides
        if not text[pos - 1].isspace() and not text[pos + 1].isspace():
            return pos + 1
        pos = text.rfind("\n", low, pos)
    pos = text.rfind(" ", low, limit)
    while pos > low:  # cut before " " with non-space on both sides
        if not text[pos - 1].isspace() and not text[pos + 1].isspace():
            return pos
        pos = text.rfind(" ", low, pos)
    for pos in range(limit, low, -1):  # between two non-space characters
        if not text[pos - 1].isspace() and not text[pos].isspace():
            return pos
    return limit


def iter_chunks(blocks: Iterable[str], chunk_chars: int) -> Iterator[str]:
    """Re-cut a stream of text blocks into chunks of at most `chunk_chars` characters at `safe_cut` points."""
    buf = ""
    for block in blocks:
        buf += block
        while len(buf) > chunk_chars:
            cut = safe_cut(buf, chunk_chars)
            yield buf[:cut]
            buf = buf[cut:]
    if buf:
        yield buf


def iter_paragraphs(blocks: Iterable[str], chunk_chars: int) -> Iterator[tuple[str, str]]:
    """`split_paragraphs` over a stream of text blocks, with paragraphs longer than `chunk_chars` cut."""
    buf, any_piece = "", False
    for block in blocks:
        buf += block
        pos = 0
        for m in _PARAGRAPH_BREAK.finditer(buf):
            if m.end() == len(buf):  # the separator may go on in the next block
                break
            yield from _bounded(buf[pos : m.start()], m.group(), chunk_chars)
            pos, any_piece = m.end(), True
        buf = buf[pos:]
        while len(buf) > 2 * chunk_chars:  # a long paragraph: emit cut pieces, keep the tail
            cut = safe_cut(buf, chunk_chars)
            yield buf[:cut], ""
            buf, any_piece = buf[cut:], True
    pos = 0
    for m in _PARAGRAPH_BREAK.finditer(buf):
        yield from _bounded(buf[pos : m.start()], m.group(), chunk_chars)
        pos, any_piece = m.end(), True
    if pos < len(buf) or not any_piece:
        yield from _bounded(buf[pos:], "", chunk_chars)


def _bounded(paragraph: str, separator: str, chunk_chars: int) -> Iterator[tuple[str, str]]:
    chunks = list(iter_chunks([paragraph], chunk_chars)) or [""]
    for chunk in chunks[:-1]:
        yield chunk, ""
    yield chunks[-1], separator


@dataclass
class StreamDocument:
    """One document: the file it came from and a one-shot stream of its (paragraph, separator) pieces."""

    source: str
    parts: Iterator[tuple[str, str]]


def _blocks_of(text: str, chunk_chars: int) -> Iterator[str]:
    for start in range(0, len(text), chunk_chars):
        yield text[start : start + chunk_chars]


def _lines(blocks: Iterable[str]) -> Iterator[str]:
    """`str.splitlines()` over a stream of blocks (a line may span blocks)."""
    buf = ""
    for block in blocks:
        lines = (buf + block).splitlines(keepends=True)
        buf = lines.pop() if lines and lines[-1].splitlines() == [lines[-1]] else ""  # no line break yet
        yield from (line.splitlines()[0] for line in lines)
    if buf:
        yield buf


def iter_documents(
    sources: list[str],
    *,
    text_field: str = "text",
    documents: str = "file",
    extensions: tuple[str, ...] | list[str] = DEFAULT_EXTENSIONS,
    encoding: str = "utf-8",
    chunk_chars: int = DEFAULT_CHUNK_CHARS,
) -> Iterator[StreamDocument]:
    """Stream every document of the sources (see `llmlab.data.sources` for what a document is).

    Consume each document's `parts` before asking for the next document. Documents may be all whitespace;
    callers drop those (as `llmlab data prepare` does).
    """
    if documents not in DOCUMENT_MODES:
        raise ValueError(f"unknown documents mode '{documents}'; choose one of: {', '.join(DOCUMENT_MODES)}")
    for sf in resolve_sources(sources, extensions):
        name = str(sf.path)
        if sf.jsonl:
            for text in iter_jsonl(sf.path, text_field, encoding):
                yield StreamDocument(name, iter_paragraphs(_blocks_of(text, chunk_chars), chunk_chars))
            continue
        blocks = iter_text_blocks(sf.path, chunk_chars, encoding)
        if documents == "file":
            yield StreamDocument(name, iter_paragraphs(blocks, chunk_chars))
        elif documents == "paragraph":
            for paragraph, _ in iter_paragraphs(blocks, chunk_chars):
                yield StreamDocument(name, iter([(paragraph, "")]))
        else:
            for line in _lines(blocks):
                yield StreamDocument(name, iter_paragraphs([line], chunk_chars))


def iter_source_texts(
    sources: list[str], *, text_field: str = "text", encoding: str = "utf-8", chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> Iterator[str]:
    """Every document of the sources as chunks of at most `chunk_chars` characters cut at `safe_cut` points."""
    for sf in resolve_sources(sources):
        if sf.jsonl:
            for text in iter_jsonl(sf.path, text_field, encoding):
                yield from iter_chunks([text], chunk_chars)
        else:
            yield from iter_chunks(iter_text_blocks(sf.path, chunk_chars, encoding), chunk_chars)


def train_tokenizer(
    kind: str,
    files: Iterable[str | os.PathLike],
    vocab_size: int,
    special_tokens: Mapping[str, str | None] | None = None,
    *,
    text_field: str = "text",
    min_frequency: int = 0,
    encoding: str = "utf-8",
) -> Tokenizer:
    """Train a tokenizer on text files, folders (searched recursively), JSONL files or built-in corpora.

    The text is streamed in bounded chunks (see the module docstring), so memory does not grow with the
    size of a file. See `llmlab.tokenizers.train_tokenizer_from_iterator` for the kinds and arguments.

    Raises:
        FileNotFoundError: a file or folder does not exist.
        ValueError: a bad JSONL line, a file that is not text in `encoding`, an unknown corpus name, or a
            bad kind / vocabulary size / min_frequency.
    """
    check_training_args(kind, vocab_size, min_frequency)
    check_encoding(encoding)
    texts = iter_source_texts([str(f) for f in files], text_field=text_field, encoding=encoding)
    return train_tokenizer_from_iterator(kind, texts, vocab_size, special_tokens, min_frequency=min_frequency)
