"""Batched generation for prompts of different lengths: left padding + attention mask + position ids.

A batch must be a rectangle, so shorter prompts are padded. For decoding the pads go on the LEFT, so that
every row's newest token is in the last column and all rows append their next token in the same column:

    prompt lengths 3, 5          input_ids              attention_mask       position_ids
                                 [P  P  a  b  c]        [0 0 1 1 1]          [1 1 0 1 2]
                                 [d  e  f  g  h]        [1 1 1 1 1]          [0 1 2 3 4]

The mask hides the pads from attention, and position ids count only real tokens (`cumsum(mask) - 1`, the
`transformers` convention), so row 0 sees exactly what it would see alone: the batch is just a faster way
to run the same greedy decoding (up to float rounding of the batched matmuls).

Reference: `transformers` batched generation with `padding_side="left"`
(https://huggingface.co/docs/transformers/llm_tutorial#wrong-padding-side).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from llmlab.config.sampling import SamplingConfig
from llmlab.generate.loop import generate


def left_pad(
    prompts: Sequence[Sequence[int] | torch.Tensor], pad_token_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.LongTensor, torch.LongTensor]:
    """Stack prompts of different lengths into (input_ids, attention_mask), both (B, T_max), padded on the left."""
    rows = [torch.as_tensor(p, dtype=torch.long).flatten() for p in prompts]
    if not rows or any(r.numel() == 0 for r in rows):
        raise ValueError("generate_batch needs a non-empty list of non-empty prompts (start one from a BOS token)")
    width = max(r.numel() for r in rows)
    input_ids = torch.full((len(rows), width), pad_token_id, dtype=torch.long, device=device)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long, device=device)
    for i, row in enumerate(rows):
        input_ids[i, width - row.numel() :] = row
        attention_mask[i, width - row.numel() :] = 1
    return input_ids, attention_mask


def generate_batch(
    model: nn.Module,
    prompts: Sequence[Sequence[int] | torch.Tensor],
    max_new_tokens: int | None = None,
    *,
    sampling: SamplingConfig | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    **options: Any,
) -> list[torch.LongTensor]:
    """Generate for several prompts of different lengths at once (left padding, attention mask, positions).

    Args:
        model: a decoder (llmlab `Llama`, `GPT`, ...). Models whose forward takes `position_ids` get the
            positions of the real tokens; others (and ALiBi/NoPE models, which need none) only the mask.
        prompts: token-id lists or 1-D tensors, any lengths >= 1.
        max_new_tokens: number of tokens to generate per prompt (fewer after EOS; overrides `sampling`'s).
        sampling: the decoding parameters (`llmlab.config.sampling.SamplingConfig`).
        eos_token_id: one id or several; a row ends with its first one.
        pad_token_id: the filler for left padding and finished rows (default: the first EOS id, else 0);
            its value never influences the result because the mask hides it.
        **options: every other keyword of `llmlab.generate.generate` (SamplingConfig fields, ...).

    Returns:
        One LongTensor per prompt: the prompt followed by its generated tokens, cut after its first EOS
        (no padding), i.e. what `generate(model, prompt[None], ...)` returns for that prompt alone.
    """
    if "attention_mask" in options:
        raise ValueError("generate_batch builds the attention_mask itself; pass the prompts unpadded")
    if isinstance(eos_token_id, int):
        eos_ids = [eos_token_id]
    else:
        eos_ids = list(eos_token_id) if eos_token_id is not None else []
    pad = pad_token_id if pad_token_id is not None else (eos_ids[0] if eos_ids else 0)
    device = next(model.parameters()).device
    input_ids, attention_mask = left_pad(prompts, pad, device)
    out = generate(
        model,
        input_ids,
        max_new_tokens,
        sampling=sampling,
        eos_token_id=eos_token_id,
        pad_token_id=pad,
        attention_mask=attention_mask,
        **options,
    )
    width = input_ids.size(1)
    results = []
    for i, prompt_len in enumerate(attention_mask.sum(1).tolist()):
        new = out[i, width:].tolist()
        ends = [j for j, t in enumerate(new) if t in eos_ids]
        if ends:
            new = new[: ends[0] + 1]
        results.append(torch.tensor(out[i, width - prompt_len : width].tolist() + new, dtype=torch.long))
    return results
