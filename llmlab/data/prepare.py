"""`prepare_corpus`: sources -> cleaned documents -> train/val split -> tokenizer -> token shards.

Output folder (built in a temporary sibling folder and published at the end with `llmlab.io.publish_output`,
so a failure leaves nothing; an existing folder is replaced only when llmlab made it and `--overwrite` is
given — `llmlab.io.check_output_dir`):

    train.bin, val.bin      token ids back to back (uint16 or uint32, see meta.json), nanoGPT's format
    meta.json               dtype, vocab_size, token counts, special-token ids, tokenizer file name
    tokenizer.json          the tokenizer (+ tokenizer_config.json naming its special tokens)
    report.json             what every cleaning step removed or changed, split and token counts
    config.yaml             the resolved PrepareConfig

Documents and cleaning units: a text file is one document by default (`documents: file`; JSONL: one per
record); the dedup steps work on its blank-line-separated paragraphs (`unit: paragraph`) and the quality
filters on whole documents. So tinyshakespeare (one file) stays one document: with no cleaning its shards
equal nanoGPT's exactly, and with cleaning its duplicate paragraphs go while the rest keeps its layout.

Consecutive documents are separated by the tokenizer's eos token when it has one (none is added after
the last document of a split), otherwise they are simply concatenated.

Memory is bounded by `chunk_chars`, not by the corpus (`llmlab.data.reader`): documents are read and
cleaned as streams of pieces and written to a spool file (`llmlab.data.spool`); the tokenizer is trained
on an iterator over that file and the splits are encoded in chunks cut where no token crosses the cut, then
appended to the shards. The ids equal those of encoding each document whole, except where a run of more
than `chunk_chars / 2` characters has no line break or space (see `llmlab.data.reader`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmlab.config import save_config
from llmlab.data.clean import Cleaner, StepReport
from llmlab.data.config import PrepareConfig
from llmlab.data.reader import iter_chunks, iter_documents
from llmlab.data.shards import ShardWriter, choose_dtype
from llmlab.data.sources import BUILTIN_CORPORA, resolve_sources
from llmlab.data.spool import SplitPlan, Spool, split_plan
from llmlab.io import atomic_write_json, building_output, check_output_dir
from llmlab.tokenizers import Tokenizer, load_tokenizer, train_tokenizer_from_iterator
from llmlab.tokenizers.core import check_parent_folder

META_FORMAT = "llmlab-tokens/1"
_ENCODE_BATCH = 64  # at most this many chunks per encode_batch call (and at most chunk_chars characters)


@dataclass
class PrepareReport:
    """What `prepare_corpus` did (also written to `report.json`)."""

    out_dir: str
    sources: list[str]
    documents_in: int
    chars_in: int
    steps: list[StepReport]
    documents_out: int
    chars_out: int
    split_mode: str
    train_documents: int
    val_documents: int
    train_chars: int
    val_chars: int
    tokenizer_kind: str
    vocab_size: int
    dtype: str
    train_tokens: int
    val_tokens: int
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["steps"] = [s.to_dict() for s in self.steps]
        return d


def default_out_dir(cfg: PrepareConfig) -> Path:
    """`data/<name>` for the first source: the corpus name, or the file/folder name without suffix."""
    first = cfg.sources[0]
    name = first if first in BUILTIN_CORPORA and not Path(first).exists() else Path(first).stem or "corpus"
    return Path("data") / name


def check_prepare_output(cfg: PrepareConfig, overwrite: bool = False) -> Path:
    """The output folder of `cfg`, checked against llmlab's output-folder policy before anything is read.

    Raises:
        ValueError: one line naming the folder and what to do (another --out, or --overwrite).
    """
    resolve_sources(cfg.sources, cfg.extensions)  # a missing source is named first
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    inputs = [s for s in cfg.sources if Path(s).exists()] + ([cfg.tokenizer.path] if cfg.tokenizer.path else [])
    check_parent_folder(out, "--out")
    check_output_dir(out, overwrite=overwrite, sources=inputs, flag="--out")
    return out


def _split_blocks(blocks: Iterator[str], n_chars: int) -> tuple[Iterator[str], Iterator[str]]:
    """The first `n_chars` characters of a block stream and the rest (consume the first before the second)."""
    leftover: list[str] = []

    def head() -> Iterator[str]:
        left = n_chars
        for block in blocks:
            if len(block) < left:
                yield block
                left -= len(block)
                continue
            yield block[:left]
            leftover.append(block[left:])
            return

    def tail() -> Iterator[str]:
        yield from leftover
        yield from blocks

    return head(), tail()


class _SplitEncoder:
    """Encode the documents of one split in bounded batches of chunks and append the ids to its shard."""

    def __init__(self, path: Path, tok: Tokenizer, dtype: np.dtype, chunk_chars: int) -> None:
        self.tok, self.chunk_chars = tok, chunk_chars
        self.writer = ShardWriter(path, dtype, tok.vocab_size)
        self.sep = [tok.eos_id] if tok.eos_id is not None else []
        self.batch: list[str] = []
        self.starts: list[bool] = []  # whether each chunk of the batch starts a document
        self.batch_chars = self.documents = self.chars = self.count = 0

    def add(self, blocks: Iterable[str]) -> None:
        """Append one document, given as text blocks."""
        first = True
        for chunk in iter_chunks(blocks, self.chunk_chars):
            if len(self.batch) >= _ENCODE_BATCH or self.batch_chars + len(chunk) > self.chunk_chars:
                self._flush()
            self.batch.append(chunk)
            self.starts.append(first)
            self.batch_chars += len(chunk)
            self.chars += len(chunk)
            first = False

    def _flush(self) -> None:
        for ids, starts_document in zip(self.tok.encode_batch(self.batch), self.starts, strict=True):
            if starts_document:
                if self.documents:
                    self.writer.write(self.sep)
                self.documents += 1
            self.writer.write(ids)
        self.batch, self.starts, self.batch_chars = [], [], 0

    def close(self) -> None:
        if self.batch:
            self._flush()
        self.count = self.writer.close()


def _read_and_clean(cfg: PrepareConfig, spool: Spool, say: Callable[[str], None]) -> Cleaner:
    """Stream every document of the sources through the cleaning steps into `spool`."""
    cleaner = Cleaner(cfg.clean, cfg.chunk_chars)
    options = ("text_field", "documents", "extensions", "encoding", "chunk_chars")  # iter_documents' keywords
    for doc in iter_documents(cfg.sources, **{name: getattr(cfg, name) for name in options}):
        spool.add(cleaner.clean(doc.parts))
    spool.close()
    if not cleaner.documents_in:
        raise ValueError(f"the sources {cfg.sources} contain no text (every file or record is empty)")
    say(f"read {cleaner.documents_in} documents ({cleaner.chars_in:,} chars) from {', '.join(cfg.sources)}")
    return cleaner


def _train_tokenizer(cfg: PrepareConfig, spool: Spool) -> Tokenizer:
    """Train the configured tokenizer on all cleaned text (train and val, as nanoGPT builds its character
    set from all of it), fed as an iterator of bounded chunks."""

    def chunks() -> Iterator[str]:
        for blocks in spool.documents():
            yield from iter_chunks(blocks, cfg.chunk_chars)

    spec = cfg.tokenizer
    return train_tokenizer_from_iterator(
        spec.kind, chunks(), spec.vocab_size, spec.special_tokens(), min_frequency=spec.min_frequency
    )


def _encode_splits(
    spool: Spool, plan: SplitPlan, tok: Tokenizer, dtype: np.dtype, tmp: Path, chunk_chars: int
) -> tuple[_SplitEncoder, _SplitEncoder]:
    """Write train.bin and val.bin; returns the two closed `_SplitEncoder`s (for their counts)."""
    train = _SplitEncoder(tmp / "train.bin", tok, dtype, chunk_chars)
    val = _SplitEncoder(tmp / "val.bin", tok, dtype, chunk_chars)
    for index, blocks in enumerate(spool.documents()):
        where = plan.route(index)
        if where == "both":
            head, rest = _split_blocks(blocks, plan.cut_chars)
            train.add(head)
            val.add(rest)
        else:
            (val if where == "val" else train).add(blocks)
    train.close()
    val.close()
    return train, val


def prepare_corpus(cfg: PrepareConfig, log: Any = None, *, overwrite: bool = False) -> PrepareReport:
    """Read, clean, split, tokenize and pack a corpus into `cfg.out_dir` (see the module docstring).

    Args:
        cfg: the configuration.
        log: optional callable taking one string (progress messages).
        overwrite: replace an existing output folder that llmlab made (``--overwrite``).

    Raises:
        FileNotFoundError: a missing source or tokenizer.
        ValueError: bad input (a setting, the output folder, a JSONL line, a file that is not text, an unknown
            corpus, an empty corpus, everything filtered out, a vocabulary too large for the requested dtype,
            ...). Nothing is written in these cases.
    """
    say = log or (lambda msg: None)
    cfg.validate()
    t_start = time.perf_counter()
    out = check_prepare_output(cfg, overwrite)
    tok = load_tokenizer(cfg.tokenizer.path) if cfg.tokenizer.path else None
    if tok is not None:
        choose_dtype(tok.vocab_size, cfg.dtype)  # fails early when the vocabulary does not fit
    made_parent = not out.parent.exists()
    try:
        with building_output(out, "data prepare") as tmp:
            return _prepare_into(tmp, cfg, out, tok, say, t_start)
    except BaseException:
        if made_parent and not any(out.parent.iterdir()):
            out.parent.rmdir()
        raise


def _prepare_into(
    tmp: Path, cfg: PrepareConfig, out: Path, tok: Tokenizer | None, say: Callable[[str], None], t_start: float
) -> PrepareReport:
    """The body of `prepare_corpus`: everything written into the temporary folder `tmp` (published as `out`)."""
    seconds: dict[str, float] = {}
    spool = Spool(tmp / "corpus.spool", cfg.chunk_chars)
    t0 = time.perf_counter()
    cleaner = _read_and_clean(cfg, spool, say)
    steps = cleaner.finish()
    seconds["clean"] = sum(s.seconds for s in steps)
    seconds["read"] = time.perf_counter() - t0 - seconds["clean"]
    plan = split_plan(spool.doc_chars, cfg.split.mode, cfg.split.val_fraction, cfg.split.seed)

    t0 = time.perf_counter()
    if tok is None:
        say(f"training a {cfg.tokenizer.kind} tokenizer (vocab_size {cfg.tokenizer.vocab_size})")
        tok = _train_tokenizer(cfg, spool)
    else:
        say(f"using tokenizer {cfg.tokenizer.path} ({tok.kind}, {tok.vocab_size} ids)")
    seconds["tokenizer"] = time.perf_counter() - t0
    dtype = choose_dtype(tok.vocab_size, cfg.dtype)

    t0 = time.perf_counter()
    train, val = _encode_splits(spool, plan, tok, dtype, tmp, cfg.chunk_chars)
    spool.remove()
    if not train.chars:
        raise ValueError("the train split is empty; lower split.val_fraction or add more text")
    seconds["encode"] = time.perf_counter() - t0
    say(f"wrote {train.count:,} train and {val.count:,} val tokens ({dtype.name})")
    tok.save(tmp / "tokenizer.json")
    report = PrepareReport(
        out_dir=str(out),
        sources=list(cfg.sources),
        documents_in=cleaner.documents_in,
        chars_in=cleaner.chars_in,
        steps=steps,
        documents_out=len(spool),
        chars_out=sum(spool.doc_chars),
        split_mode=plan.mode,
        train_documents=train.documents,
        val_documents=val.documents,
        train_chars=train.chars,
        val_chars=val.chars,
        tokenizer_kind=tok.kind,
        vocab_size=tok.vocab_size,
        dtype=dtype.name,
        train_tokens=train.count,
        val_tokens=val.count,
    )
    atomic_write_json(tmp / "meta.json", _meta(cfg, tok, dtype, plan.mode, train.count, val.count))
    save_config(cfg, tmp / "config.yaml")
    seconds["total"] = time.perf_counter() - t_start
    report.seconds = {k: round(v, 3) for k, v in seconds.items()}
    atomic_write_json(tmp / "report.json", report.to_dict())
    return report


def _meta(cfg: PrepareConfig, tok: Tokenizer, dtype: np.dtype, mode: str, train_tokens: int, val_tokens: int) -> dict:
    """The contents of meta.json (what the loaders and `llmlab pretrain` read)."""
    return {
        "format": META_FORMAT,
        "dtype": dtype.name,
        "vocab_size": tok.vocab_size,
        "tokenizer": "tokenizer.json",
        "tokenizer_kind": tok.kind,
        "train_tokens": train_tokens,
        "val_tokens": val_tokens,
        **{f"{role}_id": getattr(tok, f"{role}_id") for role in ("bos", "eos", "pad", "unk")},
        "document_separator": "eos" if tok.eos_id is not None else "none",
        "split": {"mode": mode, "val_fraction": cfg.split.val_fraction, "seed": cfg.split.seed},
        "sources": list(cfg.sources),
    }
