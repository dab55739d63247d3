"""`llmlab embed build|search`: sentence vectors of a text file into a searchable index folder, and cosine search.

    llmlab embed build --input sentences.txt --out vectors/                  # one text per line
    llmlab embed build --input reviews.jsonl --field text --out vectors/     # JSONL records
    llmlab embed search --index vectors/ --query "a film I enjoyed" -k 5

The encoder is the packaged all-MiniLM-L6-v2 unless `--model` names another BERT-family folder; vectors are
mean-pooled and L2-normalised by default (sentence-transformers' recipe for this model). Every option and the
input file are checked, and the texts read, before the model is loaded; the index folder follows llmlab's
output policy (built in a temporary sibling, published with its `.llmlab-output` marker; `--overwrite`
replaces only an earlier llmlab output). The search embeds the query with the model and settings recorded in
the index (`index.json`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmlab.embeddings import EmbeddingIndex, check_embed_args, embed_texts
from llmlab.io import building_output, check_output_dir, read_jsonl_records

VERB = "embed"
INPUT_SUFFIXES = (".txt", ".jsonl")


@dataclass
class EmbedRequest:
    """The options of `llmlab embed build` (see `llmlab.cli.embed` for their help)."""

    input: Path
    out: Path
    model: Path | None = None
    field: str = "text"
    id_field: str | None = None
    batch_size: int = 64
    pooling: str = "mean"
    normalize: bool = True
    max_length: int = 256
    overwrite: bool = False
    device: str = "cpu"


@dataclass
class EmbedReport:
    """What `build_index` did."""

    out: Path
    count: int
    dim: int
    model: str
    seconds: float
    notes: list[str] = field(default_factory=list)


def read_texts(path: Path, text_field: str = "text", id_field: str | None = None) -> tuple[list[str], list[str]]:
    """(texts, ids) from a `.txt` file (one text per non-blank line; id = line number) or a `.jsonl` file (the
    `text_field` of each record; id = its `id_field`, else the line number).

    Raises:
        FileNotFoundError: no such file.
        ValueError: another suffix, a JSONL line that is not an object with a string `text_field`, or no texts.
    """
    if not path.is_file():
        raise FileNotFoundError(f"--input {path} not found; pass a .txt file (one text per line) or a .jsonl file")
    if path.suffix not in INPUT_SUFFIXES:
        raise ValueError(f"--input {path} must be a .txt file (one text per line) or a .jsonl file (with --field)")
    texts, ids = [], []
    if path.suffix == ".txt":  # lines end at \n / \r\n only (str.splitlines() would also split on U+2028, ...)
        with path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    texts.append(line.rstrip("\r\n"))
                    ids.append(str(n))
    for n, record in read_jsonl_records(path) if path.suffix == ".jsonl" else ():
        value = record.get(text_field) if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise ValueError(f"{path} line {n} has no string field {text_field!r}; pass the right --field")
        texts.append(value)
        ids.append(str(record.get(id_field, n)) if id_field else str(n))
    if not texts:
        raise ValueError(f"--input {path} holds no texts; pass a file with at least one non-blank line")
    return texts, ids


def load_encoder(model: Path | str | None, device: str = "cpu") -> Any:
    """The encoder (`llmlab.hub.LoadedModel`) at `model` (None: the packaged all-MiniLM-L6-v2).

    Raises:
        ValueError: the model is not a BERT-family encoder.
    """
    from llmlab.hub import load_for_inference
    from llmlab.models.bert import resolve_encoder_path
    from llmlab.nn.device import resolve_device

    loaded = load_for_inference(resolve_encoder_path(model), device=resolve_device(device))
    if not getattr(loaded.model, "is_encoder", False):
        raise ValueError(f"--model {model}: a {loaded.family} model is not an encoder; pass a BERT-family model folder")
    return loaded


def _model_label(model: Path | None) -> tuple[str, str | None]:
    """(name shown and recorded, absolute path recorded; None for the packaged default)."""
    from llmlab.models.bert import DEFAULT_ENCODER_NAME

    if model is None:
        return DEFAULT_ENCODER_NAME, None
    return str(model), str(Path(model).resolve())


def build_index(request: EmbedRequest, say: Any = print) -> EmbedReport:
    """`llmlab embed build`: read, check the output, load the encoder, embed, publish the index folder."""
    r = request
    check_embed_args(r.batch_size, r.pooling, r.max_length)
    if r.model is not None and not Path(r.model).exists():
        raise FileNotFoundError(f"--model {r.model} not found; pass an encoder folder (default: all-MiniLM-L6-v2)")
    texts, ids = read_texts(r.input, r.field, r.id_field)
    check_output_dir(r.out, overwrite=r.overwrite, sources=[r.input, r.model], flag="--out")
    started = time.perf_counter()
    loaded = load_encoder(r.model, r.device)
    say(f"embedding {len(texts)} texts with {_model_label(r.model)[0]} ...")
    vectors = embed_texts(
        loaded.model, loaded.tokenizer, texts, batch_size=r.batch_size, pooling=r.pooling,
        normalize=r.normalize, max_length=r.max_length,
    )  # fmt: skip
    name, path = _model_label(r.model)
    meta = {"model": name, "model_path": path, "pooling": r.pooling, "normalize": r.normalize,
            "max_length": r.max_length, "input": str(r.input)}  # fmt: skip
    index = EmbeddingIndex(vectors, texts, ids, meta)
    with building_output(r.out, VERB) as tmp:
        index.save(tmp)
    return EmbedReport(r.out, len(index), index.dim, name, time.perf_counter() - started)


@dataclass
class SearchHit:
    """One result: rank (1-based), cosine score, row id and text."""

    rank: int
    score: float
    id: str
    text: str


def search_index(
    index_dir: Path, queries: list[str], k: int = 5, model: Path | None = None, device: str = "cpu"
) -> list[list[SearchHit]]:
    """`llmlab embed search`: the k nearest texts of each query, embedded like the index (its `index.json`)."""
    if k < 1:
        raise ValueError(f"-k must be at least 1, got {k}")
    if not queries or not all(q.strip() for q in queries):
        raise ValueError("--query must be a non-empty text")
    index = EmbeddingIndex.load(index_dir)
    recorded = index.meta.get("model_path")
    if model is None and recorded is not None and not Path(recorded).exists():
        raise FileNotFoundError(f"the index's model {recorded} is gone; pass --model with the same encoder")
    loaded = load_encoder(model if model is not None else (Path(recorded) if recorded else None), device)
    vectors = embed_texts(
        loaded.model, loaded.tokenizer, queries, pooling=str(index.meta.get("pooling", "mean")),
        normalize=bool(index.meta.get("normalize", True)), max_length=int(index.meta.get("max_length", 256)),
    )  # fmt: skip
    return [
        [SearchHit(rank, score, index.ids[row], index.texts[row]) for rank, (row, score) in enumerate(hits, 1)]
        for hits in index.search(vectors, k)
    ]
