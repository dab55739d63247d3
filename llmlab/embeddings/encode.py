"""`embed_texts`: texts -> sentence vectors with an encoder (`llmlab.models.bert.Bert`), batched for speed.

All texts are tokenized in one call (parallel in `tokenizers`), sorted by their token count (not their
character count, as sentence-transformers does: a Chinese character is about one token, an English word about
five characters, so on mixed text character-sorted batches pad much more) so that each batch holds rows of
nearly one length; a batch without padding runs attention without a mask. Encoding runs under
`torch.inference_mode`, the vectors stay on the model's device until the end and come back in input order.
"""

from __future__ import annotations

from typing import Any

import torch

from llmlab.embeddings.pooling import check_pooling, l2_normalize, pool
from llmlab.tokenizers.encoder import encode_rows, pad_rows, special_ids


def check_embed_args(batch_size: int, pooling: str, max_length: int) -> None:
    """One-line ValueErrors for bad embedding options (before anything is loaded)."""
    check_pooling(pooling)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2 (room for [CLS] and [SEP]), got {max_length}")


def encoder_max_length(model: Any, max_length: int) -> int:
    """`max_length` capped at the positions the model has."""
    return min(max_length, int(model.config.block_size))


def embed_texts(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    batch_size: int = 64,
    pooling: str = "mean",
    normalize: bool = True,
    max_length: int = 256,
) -> torch.Tensor:
    """Sentence embeddings (N, C) float32 on the CPU, row i for `texts[i]`.

    Args:
        model: an encoder with `encode(input_ids, attention_mask, token_type_ids)` (a `Bert`).
        tokenizer: its llmlab `Tokenizer`.
        texts: N strings.
        batch_size: texts per forward pass.
        pooling: 'mean' (sentence-transformers' default), 'cls' or 'max'.
        normalize: L2-normalise the vectors (cosine similarity = dot product).
        max_length: truncate texts to this many tokens (capped at the model's positions).
    """
    check_embed_args(batch_size, pooling, max_length)
    rows = encode_rows(tokenizer, list(texts), max_length=encoder_max_length(model, max_length))
    pad_id = special_ids(tokenizer).pad
    return embed_rows(
        model, rows, 0 if pad_id is None else pad_id, batch_size=batch_size, pooling=pooling, normalize=normalize
    )


def embed_rows(
    model: Any,
    rows: list[tuple[list[int], list[int]]],
    pad_id: int,
    *,
    batch_size: int = 64,
    pooling: str = "mean",
    normalize: bool = True,
) -> torch.Tensor:
    """Sentence embeddings (N, C) float32 on the CPU of already tokenized `(ids, type ids)` rows (special tokens
    included), in row order; batches are length-sorted (longest first, as sentence-transformers)."""
    check_embed_args(batch_size, pooling, 2)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
    device = next(model.parameters()).device
    out = torch.empty(len(rows), model.config.hidden_size, dtype=torch.float32, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                padded = len({len(rows[i][0]) for i in chunk}) > 1  # known here: no device sync to find out
                batch = pad_rows([rows[i] for i in chunk], pad_id).to(device)
                mask = batch.attention_mask if padded else None  # no padding: attention runs without a mask
                hidden = model.encode(batch.input_ids, mask, batch.token_type_ids).last_hidden_state
                vectors = pool(hidden, batch.attention_mask, pooling)  # (b, C)
                if normalize:
                    vectors = l2_normalize(vectors)
                out[torch.tensor(chunk, dtype=torch.long, device=device)] = vectors.float()
    finally:
        model.train(was_training)
    return out.cpu()
