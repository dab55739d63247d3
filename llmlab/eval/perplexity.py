"""Perplexity, bits per character and bits per byte of a language model on a held-out text.

A causal LM with context `block_size` cannot score a long text in one pass. Cutting it into disjoint
chunks is fast but the first tokens of each chunk are predicted with almost no context, which overstates
the loss. The sliding-window strategy (the `transformers` perplexity guide) moves a window of `block_size`
tokens forward by `stride` tokens and scores only the tokens the previous window did not score, so every
token is scored exactly once with at least `block_size - stride` tokens of context (all tokens before it
when it is near the start). `stride == block_size` is the disjoint-chunk computation.

Definitions (natural log everywhere; ln 2 converts nats to bits):
    loss            = total_nats / tokens_scored                   (mean negative log-likelihood per token)
    perplexity      = exp(loss)
    bits_per_char   = total_nats / ln 2 / characters of the scored text
    bits_per_byte   = total_nats / ln 2 / UTF-8 bytes of the scored text
Bits per character/byte do not depend on the tokenizer, so they compare models with different vocabularies.

The first token of the text has no context and is not scored (its characters are not counted) unless
`add_bos=True` prepends the tokenizer's BOS (or EOS) token as context — then every token of the text is scored.

References:
    - https://huggingface.co/docs/transformers/perplexity
    - Bits per byte: Gao et al., 2020, "The Pile", https://arxiv.org/abs/2101.00027 (section 4)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.nn.virtual import context_length


@dataclass(frozen=True)
class Window:
    """One forward pass: inputs `ids[begin:end]`, targets `ids[begin+1:end+1]`, of which the last `n_new` count."""

    begin: int
    end: int
    n_new: int


def sliding_windows(n_tokens: int, block_size: int, stride: int) -> list[Window]:
    """Plan the windows that score targets 1..n_tokens-1 once each (target j is predicted from ids[:j]).

    Args:
        n_tokens: length of the token sequence.
        block_size: the model's context length (window length).
        stride: how far each window moves, 1 <= stride <= block_size.
    """
    if not 1 <= stride <= block_size:
        raise ValueError(f"stride must be between 1 and the context length {block_size} (got {stride})")
    windows: list[Window] = []
    last_scored = 0  # targets 1..last_scored are done
    begin = 0
    while last_scored < n_tokens - 1:
        end = min(begin + block_size, n_tokens - 1)  # inputs ids[begin:end] predict ids[begin+1:end+1]
        windows.append(Window(begin, end, end - last_scored))
        last_scored = end
        begin += stride
    return windows


@torch.no_grad()
def score_tokens(
    model: nn.Module,
    ids: Sequence[int] | torch.Tensor,
    *,
    block_size: int | None = None,
    stride: int | None = None,
    batch_size: int = 8,
    device: torch.device | str | None = None,
) -> tuple[float, int]:
    """Sum of negative log-likelihoods (nats) of `ids[1:]` given their left context, and the number of tokens.

    Args:
        model: returns an object with `.logits (B, T, V)` from `model(input_ids)`.
        ids: token ids of the whole text.
        block_size: window length (default: `model.config.block_size`, minus the virtual tokens of a prompt/prefix
            tuning adapter).
        stride: window step (default: `block_size // 2`, so every token has >= half a window of context).
        batch_size: windows per forward pass.
        device: where to run (default: the model's device).
    """
    # Prompt/prefix tuning put P virtual tokens before every window: they take P of the context.
    block_size = int(block_size or context_length(model))
    stride = int(stride or max(block_size // 2, 1))
    device = device or next(model.parameters()).device
    ids_t = torch.as_tensor(ids, dtype=torch.long, device=device)
    windows = sliding_windows(len(ids_t), block_size, stride)
    was_training = model.training
    model.eval()
    total_nats = 0.0
    try:
        # Batch consecutive windows of equal length (all are block_size long except possibly the last ones).
        i = 0
        while i < len(windows):
            length = windows[i].end - windows[i].begin
            group = [windows[i]]
            while (
                i + len(group) < len(windows)
                and len(group) < batch_size
                and windows[i + len(group)].end - windows[i + len(group)].begin == length
            ):
                group.append(windows[i + len(group)])
            x = torch.stack([ids_t[w.begin : w.end] for w in group])  # (B, T)
            y = torch.stack([ids_t[w.begin + 1 : w.end + 1] for w in group])  # (B, T)
            for row, w in enumerate(group):
                y[row, : length - w.n_new] = -100  # already scored by an earlier window
            logits = model(x).logits.float()  # (B, T, V)
            nll = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)), y.reshape(-1), ignore_index=-100, reduction="sum"
            )
            total_nats += float(nll)
            i += len(group)
    finally:
        model.train(was_training)
    return total_nats, max(len(ids_t) - 1, 0)


def _text_after_first_token(tokenizer: Any, text: str, ids: list[int]) -> str:
    """The part of `text` after the characters of its first token (via the tokenizer's offsets when it has them)."""
    backend = getattr(tokenizer, "backend", tokenizer)  # llmlab's Tokenizer wraps a `tokenizers.Tokenizer`
    try:
        encoding = backend.encode(text, add_special_tokens=False)
        if list(encoding.ids) == ids and encoding.offsets:
            return text[encoding.offsets[0][1] :]
    except (AttributeError, TypeError):
        pass
    first = tokenizer.decode(ids[:1])
    return text[len(first) :] if text.startswith(first) else text[1:]


def evaluate_perplexity(
    model: nn.Module,
    tokenizer: Any,
    text: str,
    *,
    stride: int | None = None,
    batch_size: int = 8,
    block_size: int | None = None,
    add_bos: bool = False,
    device: torch.device | str | None = None,
) -> dict[str, float | int]:
    """Score `text` with sliding windows and return loss, perplexity, bits per char/byte and counts.

    Args:
        model: a causal LM (`llmlab.models.gpt.GPT`).
        tokenizer: has `encode(str) -> list[int]` and `decode(list[int]) -> str` (and `bos_id`/`eos_id` for
            `add_bos`).
        text: the held-out text.
        stride: window step (default `block_size // 2`); `block_size` = disjoint chunks (fastest, pessimistic).
        batch_size: windows per forward pass.
        block_size: override the window length (default: the model's context length).
        add_bos: prepend the BOS (or EOS) token so the first token of the text is scored too.
        device: where to run (default: the model's device).

    Returns:
        `{"loss", "perplexity", "bits_per_char", "bits_per_byte", "tokens_scored", "characters", "bytes",
        "total_nats", "block_size", "stride"}`; loss in nats per token.
    """
    ids = list(tokenizer.encode(text))
    scored_text = text
    if add_bos:
        start = getattr(tokenizer, "bos_id", None)
        start = start if start is not None else getattr(tokenizer, "eos_id", None)
        if start is None:
            raise ValueError("add_bos=True but the tokenizer has no BOS or EOS token; evaluate without it")
        ids = [int(start)] + ids
    elif ids:
        # The first token has no context: it is not scored, so its characters are not counted either.
        scored_text = _text_after_first_token(tokenizer, text, ids)
    if len(ids) < 2:
        raise ValueError("the text is too short to score: it needs at least two tokens (or one with add_bos=True)")
    # Prompt/prefix tuning put P virtual tokens before every window: they take P of the context.
    block_size = int(block_size or context_length(model))
    stride = int(stride or max(block_size // 2, 1))
    total_nats, n_tokens = score_tokens(
        model, ids, block_size=block_size, stride=stride, batch_size=batch_size, device=device
    )
    n_chars = len(scored_text)
    n_bytes = len(scored_text.encode("utf-8"))
    loss = total_nats / n_tokens
    return {
        "loss": loss,
        "perplexity": math.exp(loss),
        "bits_per_char": total_nats / math.log(2) / max(n_chars, 1),
        "bits_per_byte": total_nats / math.log(2) / max(n_bytes, 1),
        "tokens_scored": n_tokens,
        "characters": n_chars,
        "bytes": n_bytes,
        "total_nats": total_nats,
        "block_size": block_size,
        "stride": stride,
    }
