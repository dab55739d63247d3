"""POST /v1/embeddings (https://platform.openai.com/docs/api-reference/embeddings/create) with an encoder.

`llmlab serve --embedding-model PATH` (or `default` for the packaged all-MiniLM-L6-v2) loads an encoder beside
the chat model; `embeddings_router(embedder)` is then mounted (`ServeState.extra_routers`). Without one,
`missing_router` answers the route with a 404 that says how to start the server with an encoder.

`input` is a string, a list of strings, a list of token ids or a list of token-id lists (at most 2048 inputs,
none empty); token ids are wrapped in the encoder's [CLS] ... [SEP]. Texts longer than the encoder's window
are truncated (as sentence-transformers does). `encoding_format` "float" returns lists of floats, "base64"
the float32 little-endian bytes in base64 (what the openai client asks for by default). `usage.prompt_tokens`
counts the tokens the encoder read, special tokens included. Vectors are mean-pooled and L2-normalised.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from llmlab.embeddings import embed_rows, encoder_max_length
from llmlab.serve.errors import APIError, bad_request
from llmlab.tokenizers.encoder import encode_rows, special_ids

MAX_INPUTS = 2048  # OpenAI's limit on inputs per request
ROUTE = "/v1/embeddings"


class EmbeddingRequest(BaseModel):
    """The request body; unknown fields are ignored (`user`, ...)."""

    model_config = ConfigDict(extra="ignore")

    input: str | list[str] | list[int] | list[list[int]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None


@dataclass
class Embedder:
    """An encoder and its tokenizer serving /v1/embeddings (one request computes at a time).

    Attributes:
        model: a `Bert` in eval mode.
        tokenizer: its llmlab `Tokenizer`.
        name: the id responses carry.
        max_length: tokens per input at most (longer inputs are truncated).
        batch_size: inputs per forward pass.
    """

    model: Any
    tokenizer: Any
    name: str
    max_length: int = 256
    batch_size: int = 64
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rows(self, body: EmbeddingRequest) -> list[tuple[list[int], list[int]]]:
        """The inputs as `(ids, type ids)` rows with special tokens (400 for empty or out-of-vocabulary input)."""
        raw = body.input
        items: list[Any] = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
        if not items:
            raise bad_request("input must not be an empty list", "input")
        if len(items) > MAX_INPUTS:
            raise bad_request(f"input has {len(items)} items; at most {MAX_INPUTS} per request", "input")
        if any(len(item) == 0 for item in items):
            raise bad_request("input must not contain an empty string or an empty token list", "input")
        limit = encoder_max_length(self.model, self.max_length)
        if all(isinstance(item, str) for item in items):
            return encode_rows(self.tokenizer, items, max_length=limit)
        ids = special_ids(self.tokenizer)
        vocab = self.model.config.vocab_size
        rows = []
        for item in items:
            if not all(isinstance(t, int) and 0 <= t < vocab for t in item):
                raise bad_request(f"input token ids must be integers in 0..{vocab - 1}", "input")
            tokens = [ids.cls, *item[: limit - 2], ids.sep]
            rows.append((tokens, [0] * len(tokens)))
        return rows

    def embed(self, rows: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        """(N, C) unit vectors of the rows (serialised: one request at a time on the encoder)."""
        pad = special_ids(self.tokenizer).pad
        with self.lock:
            return embed_rows(self.model, rows, 0 if pad is None else pad, batch_size=self.batch_size)


def _encode_vector(vector: torch.Tensor, encoding_format: str) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(vector.numpy().astype("<f4").tobytes()).decode("ascii")
    return vector.tolist()


def embeddings_router(embedder: Embedder) -> APIRouter:
    """The /v1/embeddings route served by `embedder`."""
    router = APIRouter()

    @router.post(ROUTE)
    async def create_embeddings(body: EmbeddingRequest) -> dict[str, Any]:
        dim = embedder.model.config.hidden_size
        if body.dimensions is not None and body.dimensions != dim:
            raise bad_request(f"dimensions must be {dim} for {embedder.name} (or left out)", "dimensions")
        rows = embedder.rows(body)
        vectors = await asyncio.to_thread(embedder.embed, rows)
        data = [
            {"object": "embedding", "index": i, "embedding": _encode_vector(v, body.encoding_format)}
            for i, v in enumerate(vectors)
        ]
        tokens = sum(len(ids) for ids, _ in rows)
        return {
            "object": "list",
            "data": data,
            "model": embedder.name,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    return router


missing_router = APIRouter()


@missing_router.post(ROUTE)
async def no_embedding_model() -> None:
    """404 when the server was started without an encoder."""
    raise APIError(
        404,
        "this server has no embedding model; start it with `llmlab serve --embedding-model PATH` "
        "(or `--embedding-model default` for all-MiniLM-L6-v2)",
        code="model_not_found",
    )


def load_embedder(path: str | None, device: str = "cpu", max_length: int = 256) -> Embedder:
    """An `Embedder` for `--embedding-model` ("default": the packaged all-MiniLM-L6-v2); ValueError when the
    model is not an encoder."""
    from pathlib import Path

    from llmlab.hub import load_for_inference
    from llmlab.models.bert import DEFAULT_ENCODER_NAME, resolve_encoder_path

    folder = resolve_encoder_path(None if path in (None, "default") else path)
    loaded = load_for_inference(folder, device=device)
    if not getattr(loaded.model, "is_encoder", False):
        raise ValueError(
            f"--embedding-model {path}: a {loaded.family} model is not an encoder; pass a BERT-family model"
        )
    name = DEFAULT_ENCODER_NAME if path in (None, "default") else Path(str(path)).name
    return Embedder(loaded.model, loaded.tokenizer, name, max_length=max_length)
