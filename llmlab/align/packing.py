"""Padding-free scoring of many sequences: pack the real tokens of right-padded rows into fewer rows, so a
forward pass computes no padding, and sum each sequence's response log-probabilities.

Preference pairs differ in length (a chosen review of 30 tokens beside a rejected one of 90), so a padded
(2B, T) batch is often a third padding, and the model computes every padded position. Packing places whole
sequences one after another in rows of the batch's width (first-fit decreasing), with a block-diagonal causal
mask (`llmlab.data.sft.block_causal_mask`: no attention across sequences) and positions restarting at 0 for each
sequence, so every sequence is scored exactly as alone (up to float rounding; tested) on fewer positions::

    padded (4, 6)             packed (2, 6)               segment_ids        position_ids
    [a a a a a a]             [a a a a a a]               [1 1 1 1 1 1]      [0 1 2 3 4 5]
    [b b b . . .]     ->      [b b b c c c]               [1 1 1 2 2 2]      [0 1 2 0 1 2]
    [c c c . . .]
    [d d . . . .]             ... d in a third row

The same idea as padding-free training in ``transformers``/trl (``padding_free``), done with llmlab's masked
attention so it needs no special kernel.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.align.logprobs import token_logprobs, unwrap
from llmlab.data.sft import block_causal_mask
from llmlab.generate.loop import accepts_position_ids
from llmlab.models.heads import logits_at
from llmlab.nn.attention import Attention
from llmlab.nn.virtual import reserved_positions


def can_pack(model: nn.Module) -> bool:
    """Whether `model` scores packed rows correctly: it takes position ids, its attention takes a mask (not
    linear attention), and no PEFT module reserves positions in front of every row (prompt/prefix tuning)."""
    model = unwrap(model)
    if not accepts_position_ids(model) or reserved_positions(model)[0]:
        return False
    return not any(m.backend == "linear" for m in model.modules() if isinstance(m, Attention))


def pack_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Pack right-padded rows (see the module docstring).

    Args:
        input_ids / attention_mask / response_mask: (N, T) right-padded rows (real tokens first).

    Returns:
        ``input_ids``, ``segment_ids`` (1, 2, ... per sequence in a row, 0 = padding), ``position_ids``,
        ``response_mask``, ``sequence`` (the index of the original row of each position, -1 = padding): all
        (R, W) with R <= N rows and W = the longest sequence; ``attention_mask`` (R, W) 1 on real tokens.
    """
    lengths = attention_mask.sum(-1).tolist()  # real tokens are the prefix of each row (right padding)
    width = max(lengths)
    rows: list[list[int]] = []  # the original rows placed in each packed row
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([])
            room.append(width)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= lengths[i]
    shape = (len(rows), width)
    out = {
        "input_ids": torch.zeros(shape, dtype=input_ids.dtype),
        "segment_ids": torch.zeros(shape, dtype=torch.long),
        "position_ids": torch.zeros(shape, dtype=torch.long),
        "response_mask": torch.zeros(shape, dtype=response_mask.dtype),
        "sequence": torch.full(shape, -1, dtype=torch.long),
    }
    for r, members in enumerate(rows):
        start = 0
        for seg, i in enumerate(members, start=1):
            n, end = lengths[i], start + lengths[i]
            out["input_ids"][r, start:end] = input_ids[i, :n]
            out["response_mask"][r, start:end] = response_mask[i, :n]
            out["segment_ids"][r, start:end] = seg
            out["position_ids"][r, start:end] = torch.arange(n)
            out["sequence"][r, start:end] = i
            start = end
    out["attention_mask"] = (out["segment_ids"] > 0).long()
    return out


def packed_logprob_sums(
    model: nn.Module, packed: dict[str, torch.Tensor], n_sequences: int, *, call: Callable[..., Any] | None = None
) -> torch.Tensor:
    """(n_sequences,) float32 summed log-probabilities of each sequence's response tokens from packed rows.

    The LM head runs on the response positions only (`llmlab.models.heads.logits_at`). `model` is unwrapped;
    `call` runs the forward when it is wrapped (DDP). Every response token must follow a token of its own
    sequence (prompts are never empty), so its prediction never crosses a sequence boundary.
    """
    ids, response = packed["input_ids"], packed["response_mask"].bool()
    select = torch.zeros_like(response)
    select[:, :-1] = response[:, 1:]  # (R, W) positions whose logits predict a response token
    kwargs = {"attention_mask": block_causal_mask(packed["segment_ids"]), "position_ids": packed["position_ids"]}
    logits = logits_at(unwrap(model), select, ids, call=call or model, **kwargs).float()  # (M, V)
    picked = F.log_softmax(logits, dim=-1).gather(-1, ids[response][:, None]).squeeze(-1)  # (M,)
    sums = torch.zeros(n_sequences, dtype=torch.float32, device=ids.device)
    return sums.index_add(0, packed["sequence"][response], picked)


def score_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor, *, pack: bool
) -> dict[str, Any]:
    """Right-padded rows ready for `response_logprob_sums`: ``response_lengths`` (N,) and either the padded
    rows or their ``packed`` form (`pack_rows`)."""
    rows: dict[str, Any] = {"response_lengths": response_mask.sum(-1)}
    if pack:
        rows["packed"] = pack_rows(input_ids, attention_mask, response_mask)
    else:
        rows.update(input_ids=input_ids, attention_mask=attention_mask, response_mask=response_mask)
    return rows


def response_logprob_sums(
    model: nn.Module, rows: dict[str, Any], *, call: Callable[..., Any] | None = None
) -> torch.Tensor:
    """(N,) float32 summed response log-probabilities of `score_rows` output under `model` (packed or padded)."""
    if "packed" in rows:
        return packed_logprob_sums(model, rows["packed"], rows["response_lengths"].shape[0], call=call)
    ids, attn, resp = rows["input_ids"], rows["attention_mask"], rows["response_mask"]
    return token_logprobs(model, ids, attn, resp, call=call).logprobs.sum(-1)
