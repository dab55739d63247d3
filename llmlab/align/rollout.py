"""Rollouts: sample completions of prompts with llmlab's batched generator (left padding + KV cache), then lay
them out as right-padded ``prompt + response`` rows for scoring and training (`llmlab.align.logprobs`).

    rollout = sample_rollout(policy, prompts, n_per_prompt=4, sampling=SamplingConfig(temperature=1.0,
                             max_new_tokens=32), eos_ids=[2], pad_id=0)
    rollout.input_ids        # (B*n, T) prompt_i + response_ij, right-padded
    rollout.response_mask    # (B*n, T) 1 on the response tokens (EOS included when one was produced)
    rollout.prompt_index     # (B*n,) which prompt each row completes (rows of one prompt are consecutive)

Sampling draws from torch's global generator (or `SamplingConfig.seed`), which the trainer checkpoints, so a
resumed PPO/GRPO run samples the same completions as one that never stopped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from llmlab.config.sampling import SamplingConfig
from llmlab.data.preference import pad_right
from llmlab.generate.batch import generate_batch


@dataclass
class Rollout:
    """Sampled completions as right-padded rows (see the module docstring).

    Attributes:
        input_ids: (N, T) prompt + response ids, padded with `pad_id` on the right.
        attention_mask: (N, T) 1 on real tokens.
        response_mask: (N, T) 1 on response tokens.
        prompt_index: (N,) index into the prompt list.
        prompt_lengths: (N,) prompt tokens per row.
        response_lengths: (N,) response tokens per row (0 when the model ended at once is impossible: at least
            one token is generated unless max_new_tokens is 0).
        ended: (N,) bool, the response ends with an EOS token (False: cut at max_new_tokens).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_index: torch.Tensor
    prompt_lengths: torch.Tensor
    response_lengths: torch.Tensor
    ended: torch.Tensor

    def responses(self) -> list[list[int]]:
        """Each row's response ids (EOS included when produced)."""
        return [row[mask.bool()].tolist() for row, mask in zip(self.input_ids, self.response_mask, strict=True)]

    def to(self, device: torch.device | str) -> Rollout:
        return Rollout(**{k: v.to(device) for k, v in vars(self).items()})


def right_pad_rows(
    prompts: Sequence[Sequence[int]], responses: Sequence[Sequence[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, response_mask), each (N, T_max): row i = prompts[i] + responses[i], right-padded."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    for i, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {i} is empty; every row needs at least one prompt token (e.g. BOS)")
    rows = [list(p) + list(r) for p, r in zip(prompts, responses, strict=True)]
    batch = pad_right(rows, [len(p) for p in prompts], pad_id)
    return batch["input_ids"], batch["attention_mask"], batch["response_mask"]


@torch.no_grad()
def sample_rollout(
    model: nn.Module,
    prompts: Sequence[Sequence[int]],
    *,
    n_per_prompt: int = 1,
    sampling: SamplingConfig,
    eos_ids: Sequence[int],
    pad_id: int,
    batch_size: int | None = None,
) -> Rollout:
    """Sample `n_per_prompt` completions of every prompt with `model` (eval mode while sampling).

    Args:
        model: the policy (unwrapped).
        prompts: token-id lists.
        n_per_prompt: completions per prompt (GRPO's group size; PPO uses 1).
        sampling: temperature/top-k/top-p/max_new_tokens (`SamplingConfig`).
        eos_ids: ids that end a response (kept in it, as the token the policy learns to stop with).
        pad_id: filler id for the right padding.
        batch_size: generate at most this many rows at once (None: all).
    """
    if n_per_prompt < 1:
        raise ValueError(f"n_per_prompt must be >= 1, got {n_per_prompt}")
    rows = [list(p) for p in prompts for _ in range(n_per_prompt)]
    index = [i for i in range(len(prompts)) for _ in range(n_per_prompt)]
    step = batch_size or len(rows)
    was_training = model.training
    model.eval()
    try:
        outs: list[torch.Tensor] = []
        for s in range(0, len(rows), step):
            outs += generate_batch(
                model, rows[s : s + step], sampling=sampling, eos_token_id=list(eos_ids), pad_token_id=pad_id
            )
    finally:
        model.train(was_training)
    responses = [o[len(p) :].tolist() for o, p in zip(outs, rows, strict=True)]
    ids, attn, resp = right_pad_rows(rows, responses, pad_id)
    eos = set(eos_ids)
    return Rollout(
        input_ids=ids,
        attention_mask=attn,
        response_mask=resp,
        prompt_index=torch.tensor(index, dtype=torch.long),
        prompt_lengths=torch.tensor([len(p) for p in rows], dtype=torch.long),
        response_lengths=torch.tensor([len(r) for r in responses], dtype=torch.long),
        ended=torch.tensor([bool(r) and r[-1] in eos for r in responses], dtype=torch.bool),
    )
