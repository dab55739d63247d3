"""`EmbeddingIndex`: sentence vectors with their texts, saved as a folder and searched by cosine similarity.

Folder layout:
- `vectors.safetensors`: one float32 tensor `vectors` (N, C),
- `items.jsonl`: one `{"id": ..., "text": ...}` per row, in row order,
- `index.json`: what made it (`model`, `pooling`, `normalize`, `max_length`, `dim`, `count`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmlab.embeddings.pooling import l2_normalize
from llmlab.io import atomic_write, atomic_write_json, atomic_write_text
from llmlab.io.files import read_json, read_jsonl_records

VECTORS_FILE = "vectors.safetensors"
ITEMS_FILE = "items.jsonl"
META_FILE = "index.json"


@dataclass
class EmbeddingIndex:
    """N vectors (N, C) with a text and an id per row, and free-form metadata (how they were made).

    Attributes:
        vectors: (N, C) float32.
        texts: N texts.
        ids: N ids (default: "0", "1", ...).
        meta: e.g. {"model": ..., "pooling": "mean", "normalize": true, "max_length": 256}.
    """

    vectors: torch.Tensor
    texts: list[str]
    ids: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.vectors.dim() != 2:
            raise ValueError(f"index vectors must be (N, C), got shape {tuple(self.vectors.shape)}")
        if not self.ids:
            self.ids = [str(i) for i in range(len(self.texts))]
        if not len(self.texts) == len(self.ids) == self.vectors.shape[0]:
            raise ValueError(
                f"index has {self.vectors.shape[0]} vectors, {len(self.texts)} texts and {len(self.ids)} ids; "
                "they must match"
            )

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def search(self, query_vectors: torch.Tensor, k: int = 5) -> list[list[tuple[int, float]]]:
        """For each query (Q, C) (or one (C,) vector): the k most cosine-similar rows, as (row, score), best first."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        q = query_vectors.float().reshape(-1, query_vectors.shape[-1])  # (Q, C)
        if q.shape[1] != self.dim:
            raise ValueError(
                f"query vectors have {q.shape[1]} dimensions but the index {self.dim}; embed the query with the "
                f"index's model ({self.meta.get('model', 'unknown')})"
            )
        scores = l2_normalize(q) @ l2_normalize(self.vectors.float()).T  # (Q, N) cosine similarities
        top = torch.topk(scores, min(k, len(self)), dim=1)
        return [
            [(int(i), float(s)) for i, s in zip(row_idx.tolist(), row_scores.tolist(), strict=True)]
            for row_idx, row_scores in zip(top.indices, top.values, strict=True)
        ]

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the three files into `folder` (created if needed), each atomically; returns the folder."""
        from safetensors.torch import save_file

        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        vectors = {"vectors": self.vectors.float().contiguous().cpu()}
        atomic_write(d / VECTORS_FILE, lambda p: save_file(vectors, str(p)))
        lines = (
            json.dumps({"id": i, "text": t}, ensure_ascii=False) for i, t in zip(self.ids, self.texts, strict=True)
        )
        atomic_write_text(d / ITEMS_FILE, "".join(line + "\n" for line in lines))
        atomic_write_json(d / META_FILE, {**self.meta, "dim": self.dim, "count": len(self)})
        return d

    @classmethod
    def load(cls, folder: str | os.PathLike) -> EmbeddingIndex:
        """Read a folder written by `save` (FileNotFoundError / ValueError in one line when it is not one)."""
        from llmlab.models.checkpoint_io import load_safetensors

        d = Path(folder)
        missing = [name for name in (VECTORS_FILE, ITEMS_FILE, META_FILE) if not (d / name).is_file()]
        if missing:
            raise FileNotFoundError(
                f"{d} is not an embedding index (no {', '.join(missing)}); build one with `llmlab embed`"
            )
        vectors = load_safetensors(d / VECTORS_FILE).get("vectors")
        if vectors is None:
            raise ValueError(f"{d / VECTORS_FILE} holds no 'vectors' tensor; rebuild the index with `llmlab embed`")
        texts, ids = [], []
        # JSONL lines end at "\n" only: a text may hold U+2028 and other characters str.splitlines() splits on.
        for n, item in read_jsonl_records(d / ITEMS_FILE, "rebuild the index"):
            try:
                ids.append(str(item["id"]))
                texts.append(str(item["text"]))
            except (KeyError, TypeError):
                raise ValueError(
                    f"{d / ITEMS_FILE} line {n} is not an {{'id', 'text'}} object; rebuild the index"
                ) from None
        meta = read_json(d / META_FILE, "rebuild the index")
        meta = {k: v for k, v in meta.items() if k not in ("dim", "count")} if isinstance(meta, dict) else {}
        return cls(vectors, texts, ids, meta)
