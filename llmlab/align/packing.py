"""Scoring preference pairs without padding and with the prompt computed once per pair.

A padded batch of pairs is 2B rows ``prompt + chosen`` and ``prompt + rejected``, each padded to the longest:
every prompt token is computed twice, and with responses of different lengths a third of the positions can be
padding. `pack_pairs` instead lays each pair out ONCE as ``prompt | chosen | rejected`` and places whole pairs
one after another in rows of the longest pair's width (first-fit decreasing)::

    row:      p p p c c r r r r | p p c r r r .        (p prompt, c chosen, r rejected, . padding)
    position: 0 1 2 3 4 3 4 5 6 | 0 1 2 2 3 4 .        (the rejected branch continues the prompt too)

The attention mask (`pair_attention_mask`) lets a token see the earlier tokens of its own pair that lie on its
own branch: prompt tokens see the prompt, chosen tokens the prompt and the chosen tokens before them, rejected
tokens the prompt and the rejected tokens before them (never the chosen ones). With the position ids restarting
per pair and continuing the prompt in both branches, every response token gets exactly the hidden state it has
in its own padded row (up to float rounding; tested, also for the gradient), while the model computes each
prompt once and no padding. The first rejected token is predicted from the prompt's last position, the
position that also predicts the first chosen token (its logits are computed once and read twice).

The same idea as prefix sharing in trl's padding-free/"shared prompt" paths, done with llmlab's masked
attention (`sdpa` or `eager` backends, position ids, no ALiBi: `can_pack`) so it needs no special kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.align.logprobs import token_logprobs, unwrap
from llmlab.data.preference import PreferencePair, collate_pairs
from llmlab.generate.loop import accepts_position_ids
from llmlab.models.heads import logits_at
from llmlab.nn.attention import Attention
from llmlab.nn.virtual import reserved_positions

PROMPT, CHOSEN, REJECTED = 0, 1, 2  # the branch of a packed position


def can_pack(model: nn.Module) -> bool:
    """Whether `model` scores packed pairs exactly: it takes position ids, every attention layer takes a mask
    with full (not sliding-window or linear) attention, no ALiBi bias (it would see packed distances) and no
    PEFT module reserving positions in front of every row (prompt/prefix tuning)."""
    model = unwrap(model)
    if not accepts_position_ids(model) or reserved_positions(model)[0] or hasattr(model, "alibi_slopes"):
        return False
    return all(m.backend in ("sdpa", "eager") for m in model.modules() if isinstance(m, Attention))


def _place(lengths: list[int]) -> list[list[int]]:
    """First-fit decreasing: the items placed in each row of width max(lengths)."""
    width, rows, room = max(lengths), [], []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([])
            room.append(width)
            slot = len(rows) - 1
        rows[slot].append(i)
        room[slot] -= lengths[i]
    return rows


def pack_pairs(pairs: Sequence[PreferencePair]) -> dict[str, torch.Tensor]:
    """B pairs as packed rows (see the module docstring).

    Returns:
        (R, W) ``input_ids``, ``position_ids``, ``segment_ids`` (1, 2, ... per pair in its row; 0 = padding),
        ``branch`` (PROMPT / CHOSEN / REJECTED), ``attention_mask`` (1 on real tokens); per response token (M,)
        ``predictor`` (flat index r * W + c of the position whose logits predict it), ``target`` (its id),
        ``sequence`` (i for pair i's chosen response, B + i for its rejected one); ``response_lengths`` (2B,).

    Raises:
        ValueError: a pair without a prompt token (nothing to predict its first response token from).
    """
    b = len(pairs)
    for p in pairs:
        if not p.prompt_ids:
            raise ValueError(f"the pair of line {p.line} has no prompt token to predict its response from; "
                             "give it a prompt or set data.add_bos=true")  # fmt: skip
    lengths = [len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs]
    rows = _place(lengths)
    width = max(lengths)
    ids, pos, seg, branch = ([[0] * width for _ in rows] for _ in range(4))
    predictor, target, sequence = [], [], []
    for r, members in enumerate(rows):
        start = 0
        for s, i in enumerate(members, start=1):
            p, c, j = pairs[i].prompt_ids, pairs[i].chosen_ids, pairs[i].rejected_ids
            lp, lc, end = len(p), len(c), start + lengths[i]
            ids[r][start:end] = [*p, *c, *j]
            pos[r][start:end] = [*range(lp + lc), *range(lp, lp + len(j))]
            seg[r][start:end] = [s] * lengths[i]
            branch[r][start:end] = [PROMPT] * lp + [CHOSEN] * lc + [REJECTED] * len(j)
            last_prompt = r * width + start + lp - 1
            predictor += [last_prompt + k for k in range(lc)]  # chosen token k follows position lp - 1 + k
            predictor += [last_prompt] + [last_prompt + lc + k for k in range(1, len(j))]  # rejected: the prompt end
            target += [*c, *j]
            sequence += [i] * lc + [b + i] * len(j)
            start = end
    segment_ids = torch.tensor(seg, dtype=torch.long)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "position_ids": torch.tensor(pos, dtype=torch.long),
        "segment_ids": segment_ids,
        "branch": torch.tensor(branch, dtype=torch.long),
        "attention_mask": (segment_ids > 0).long(),
        "predictor": torch.tensor(predictor, dtype=torch.long),
        "target": torch.tensor(target, dtype=torch.long),
        "sequence": torch.tensor(sequence, dtype=torch.long),
        "response_lengths": torch.tensor([len(p.chosen_ids) for p in pairs] + [len(p.rejected_ids) for p in pairs]),
    }


def pair_attention_mask(segment_ids: torch.Tensor, branch: torch.Tensor) -> torch.Tensor:
    """(R, 1, W, W) bool: query i may see key j when j <= i in the same pair and j is a prompt token or on i's
    branch; a padding query sees only itself (no empty softmax row)."""
    w = segment_ids.shape[1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # (R, W, W)
    causal = torch.ones(w, w, dtype=torch.bool, device=segment_ids.device).tril()
    on_branch = (branch[:, None, :] == PROMPT) | (branch[:, None, :] == branch[:, :, None])  # key prompt or same branch
    real = (segment_ids > 0)[:, :, None]
    eye = torch.eye(w, dtype=torch.bool, device=segment_ids.device)
    return ((same & causal & on_branch & real) | eye)[:, None]


def packed_logprob_sums(
    model: nn.Module, packed: dict[str, torch.Tensor], *, call: Callable[..., Any] | None = None
) -> torch.Tensor:
    """(2B,) float32 summed response log-probabilities of `pack_pairs` rows: chosen responses, then rejected.

    The LM head runs once per predicting position (`llmlab.models.heads.logits_at`). `model` is unwrapped;
    `call` runs the forward when it is wrapped (DDP).
    """
    ids = packed["input_ids"]
    select = torch.zeros(ids.numel(), dtype=torch.bool, device=ids.device)
    select[packed["predictor"]] = True
    rank = select.long().cumsum(0) - 1  # (R * W,) row-major rank of each selected position among the selected
    kwargs = {"attention_mask": pair_attention_mask(packed["segment_ids"], packed["branch"]),
              "position_ids": packed["position_ids"]}  # fmt: skip
    logits = logits_at(unwrap(model), select.view(ids.shape), ids, call=call or model, **kwargs)  # (U, V)
    logp = F.log_softmax(logits.float(), dim=-1)  # (U, V)
    picked = logp[rank[packed["predictor"]], packed["target"]]  # (M,)
    sums = torch.zeros(packed["response_lengths"].shape[0], dtype=torch.float32, device=ids.device)
    return sums.index_add(0, packed["sequence"], picked)


def pair_rows(pairs: Sequence[PreferencePair], pad_id: int, *, pack: bool) -> dict[str, Any]:
    """B pairs ready for `response_logprob_sums`: ``packed`` (`pack_pairs`) or the padded 2B rows
    (`collate_pairs`: chosen rows first), with ``response_lengths`` (2B,), ``margin`` (B,) and ``tokens`` (the
    tokens of the 2B prompt + response sequences, however they are laid out: what tokens/s counts)."""
    tokens = sum(2 * len(p.prompt_ids) + len(p.chosen_ids) + len(p.rejected_ids) for p in pairs)
    if pack:
        packed = pack_pairs(pairs)
        margin = torch.tensor([p.margin for p in pairs], dtype=torch.float32)
        return {"packed": packed, "response_lengths": packed["response_lengths"], "margin": margin, "tokens": tokens}
    rows: dict[str, Any] = collate_pairs(pairs, pad_id)
    rows.update(response_lengths=rows["response_mask"].sum(-1), tokens=tokens)
    return rows


def response_logprob_sums(model: nn.Module, rows: dict[str, Any], *, call: Callable[..., Any] | None = None) -> Any:
    """(2B,) float32 summed response log-probabilities of `pair_rows` output under `model` (packed or padded)."""
    if "packed" in rows:
        return packed_logprob_sums(model, rows["packed"], call=call)
    ids, attn, resp = rows["input_ids"], rows["attention_mask"], rows["response_mask"]
    return token_logprobs(model, ids, attn, resp, call=call).logprobs.sum(-1)
