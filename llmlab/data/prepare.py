"""`prepare_corpus`: sources -> cleaned documents -> train/val split -> tokenizer -> token shards.

Output folder (written to a temporary sibling folder and renamed at the end, so a failure leaves nothing):

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
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from llmlab.config import save_config
from llmlab.data.clean import StepReport, clean_documents
from llmlab.data.config import PrepareConfig
from llmlab.data.shards import ShardWriter, choose_dtype
from llmlab.data.sources import BUILTIN_CORPORA, read_documents
from llmlab.tokenizers import Tokenizer, load_tokenizer, train_tokenizer_from_iterator

META_FORMAT = "llmlab-tokens/1"
_ENCODE_CHUNK = 64  # documents per encode_batch call


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


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"output path {out} is a file; pass a folder to --out")
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise FileExistsError(
            f"output folder {out} exists and is not a prepared corpus (no meta.json); choose another --out"
        )


def split_documents(texts: list[str], mode: str, val_fraction: float, seed: int) -> tuple[list[str], list[str], str]:
    """Split document texts into train and val lists; returns (train, val, mode used). See `SplitConfig`.

    Raises:
        ValueError: `random` with fewer than 2 documents.
    """
    if mode == "auto":
        mode = "random" if len(texts) >= 10 else "tail"
    if val_fraction == 0:
        return list(texts), [], mode
    if mode == "tail":
        total = sum(len(t) for t in texts)
        cut = int(total * (1 - val_fraction))  # nanoGPT: train = data[:int(n*0.9)]
        train, val, seen = [], [], 0
        for t in texts:
            if seen + len(t) <= cut:
                train.append(t)
            elif seen >= cut:
                val.append(t)
            else:  # the boundary document is cut in two
                train.append(t[: cut - seen])
                val.append(t[cut - seen :])
            seen += len(t)
        return train, val, mode
    if len(texts) < 2:
        raise ValueError(
            f"split.mode=random needs at least 2 documents, the corpus has {len(texts)}; "
            "use split.mode=tail or documents=paragraph"
        )
    order = list(range(len(texts)))
    random.Random(seed).shuffle(order)
    n_val = min(len(texts) - 1, max(1, round(len(texts) * val_fraction)))
    val_idx = set(order[:n_val])
    train = [t for i, t in enumerate(texts) if i not in val_idx]
    val = [t for i, t in enumerate(texts) if i in val_idx]
    return train, val, mode


def _write_split(path: Path, texts: list[str], tok: Tokenizer, dtype: Any) -> int:
    """Encode texts in batches and append them to a shard, with eos between documents."""
    sep = [tok.eos_id] if tok.eos_id is not None else []
    with ShardWriter(path, dtype, tok.vocab_size) as w:
        for start in range(0, len(texts), _ENCODE_CHUNK):
            for k, ids in enumerate(tok.encode_batch(texts[start : start + _ENCODE_CHUNK])):
                if start + k > 0:
                    w.write(sep)
                w.write(ids)
    return w.count


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def prepare_corpus(cfg: PrepareConfig, log: Any = None) -> PrepareReport:
    """Read, clean, split, tokenize and pack a corpus into `cfg.out_dir` (see the module docstring).

    Args:
        cfg: the configuration.
        log: optional callable taking one string (progress messages).

    Raises:
        FileNotFoundError: a missing source or tokenizer.
        ValueError: bad input (JSONL line, unknown corpus, empty corpus, everything filtered out, a
            vocabulary too large for the requested dtype, ...). Nothing is written in these cases.
    """
    say = log or (lambda msg: None)
    cfg.validate()
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}
    out = Path(cfg.out_dir) if cfg.out_dir else default_out_dir(cfg)
    _check_out_dir(out)

    t0 = time.perf_counter()
    docs = read_documents(cfg.sources, text_field=cfg.text_field, documents=cfg.documents, extensions=cfg.extensions)
    if not docs:
        raise ValueError(f"the sources {cfg.sources} contain no text (every file or record is empty)")
    chars_in = sum(len(d.text) for d in docs)
    seconds["read"] = time.perf_counter() - t0
    say(f"read {len(docs)} documents ({chars_in:,} chars) from {', '.join(cfg.sources)}")

    cdocs, steps = clean_documents(docs, cfg.clean)
    texts = [d.text for d in cdocs]
    seconds["clean"] = sum(s.seconds for s in steps)

    train_texts, val_texts, mode = split_documents(texts, cfg.split.mode, cfg.split.val_fraction, cfg.split.seed)
    if not any(t.strip() for t in train_texts):
        raise ValueError("the train split is empty; lower split.val_fraction or add more text")

    t0 = time.perf_counter()
    if cfg.tokenizer.path:
        tok = load_tokenizer(cfg.tokenizer.path)
        say(f"using tokenizer {cfg.tokenizer.path} ({tok.kind}, {tok.vocab_size} ids)")
    else:
        say(f"training a {cfg.tokenizer.kind} tokenizer (vocab_size {cfg.tokenizer.vocab_size})")
        # Trained on all cleaned text (train and val), as nanoGPT builds its character set from all of it.
        tok = train_tokenizer_from_iterator(
            cfg.tokenizer.kind,
            texts,
            cfg.tokenizer.vocab_size,
            cfg.tokenizer.special_tokens(),
            min_frequency=cfg.tokenizer.min_frequency,
        )
    seconds["tokenizer"] = time.perf_counter() - t0
    dtype = choose_dtype(tok.vocab_size, cfg.dtype)

    made_parent = not out.parent.exists()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        t0 = time.perf_counter()
        train_tokens = _write_split(tmp / "train.bin", train_texts, tok, dtype)
        val_tokens = _write_split(tmp / "val.bin", val_texts, tok, dtype)
        seconds["encode"] = time.perf_counter() - t0
        say(f"wrote {train_tokens:,} train and {val_tokens:,} val tokens ({dtype.name})")
        tok.save(tmp / "tokenizer.json")
        report = PrepareReport(
            out_dir=str(out),
            sources=list(cfg.sources),
            documents_in=len(docs),
            chars_in=chars_in,
            steps=steps,
            documents_out=len(cdocs),
            chars_out=sum(len(t) for t in texts),
            split_mode=mode,
            train_documents=len(train_texts),
            val_documents=len(val_texts),
            train_chars=sum(len(t) for t in train_texts),
            val_chars=sum(len(t) for t in val_texts),
            tokenizer_kind=tok.kind,
            vocab_size=tok.vocab_size,
            dtype=dtype.name,
            train_tokens=train_tokens,
            val_tokens=val_tokens,
        )
        meta = {
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
        _write_json(tmp / "meta.json", meta)
        save_config(cfg, tmp / "config.yaml")
        seconds["total"] = time.perf_counter() - t_start
        report.seconds = {k: round(v, 3) for k, v in seconds.items()}
        _write_json(tmp / "report.json", report.to_dict())
        os.chmod(tmp, 0o755)  # mkdtemp makes it 0700
        if out.exists():  # replace an earlier prepared corpus: move it aside, move the new one in, delete
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if made_parent and not any(out.parent.iterdir()):
            out.parent.rmdir()
        raise
    return report
