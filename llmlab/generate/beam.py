"""Beam search: keep the `num_beams` most likely partial sequences instead of one greedy path.

Every step, each running beam proposes every vocabulary token; the candidates are ranked by their summed
log-probability and the best ones survive:

    scores  = running_score[b] + log_softmax(logits[b])            # (B, nb, V)
    top-K over the nb*V candidates (K = (1 + #eos) * nb, at least 2 * nb, so that nb non-finished
    candidates survive even if the best ones all end with EOS)
    candidates ending with EOS (or reaching max length) move to the finished pool with the score
        sum_logprobs / (generated_length ** length_penalty)
    the nb best other candidates keep running (the KV cache rows are re-ordered to follow them)

`length_penalty > 0` favours longer sequences, `< 0` shorter ones. `early_stopping` decides when to stop:
`True` as soon as `num_beams` hypotheses are finished; `False` when the best running beam, scored at its
current length, cannot beat the worst finished one (a heuristic); `"never"` only when no better hypothesis
is possible at all (with `length_penalty > 0` the running beam is scored as if it reached `max_length`).

This is a faithful port of the vectorised beam search in `transformers` 5.x
(`GenerationMixin._beam_search`, same tensors, same tie-breaking), so `beam_search` returns the same
sequences and scores as `model.generate(num_beams=..., do_sample=False, length_penalty=...,
early_stopping=..., num_return_sequences=...)`. The generated length used by the length penalty counts
only new tokens (EOS included), as in `transformers` >= 4.50.

References:
    - Beam search for neural MT: Sutskever et al., 2014, https://arxiv.org/abs/1409.3215; length penalty:
      Wu et al., 2016 (GNMT), https://arxiv.org/abs/1609.08144
    - https://huggingface.co/blog/how-to-generate (beam search section)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.generate.loop import context_window, new_kv_cache
from llmlab.generate.penalties import build_penalties
from llmlab.generate.processors import LogitsProcessor, LogitsProcessorList
from llmlab.generate.sampling import SamplingConfig, resolve_sampling

NEG = -1.0e9  # "minus infinity" that keeps float arithmetic finite (as in transformers)


@dataclass
class BeamSearchOutput:
    """Result of `beam_search`.

    Attributes:
        sequences: (B * num_return_sequences, T + n) prompt + best hypotheses, best first within each prompt;
            hypotheses shorter than the longest are padded with the pad token.
        sequences_scores: (B * num_return_sequences,) length-penalised scores (`transformers`' `sequences_scores`).
    """

    sequences: torch.LongTensor
    sequences_scores: torch.Tensor


def _gather_beams(tensor: torch.Tensor, beam_indices: torch.Tensor) -> torch.Tensor:
    """Select beams along dim 1: tensor (B, nb, ...) and beam_indices (B, k) -> (B, k, ...)."""
    while beam_indices.dim() < tensor.dim():
        beam_indices = beam_indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, beam_indices, dim=1)


@torch.no_grad()
def beam_search(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    sampling: SamplingConfig | None = None,
    num_return_sequences: int = 1,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    logits_processors: Iterable[LogitsProcessor] = (),
    **options: Any,
) -> BeamSearchOutput:
    """Beam search decoding, equal to `transformers`' `generate(num_beams=..., do_sample=False, ...)`.

    Args:
        model: a decoder with `.config.block_size` and `model(ids, kv_cache=...) -> .logits (B, T, V)`.
        input_ids: (B, T) prompts of equal length.
        max_new_tokens: the most tokens to add (overrides `sampling.max_new_tokens`); prompt + max_new_tokens
            must fit in `block_size`.
        sampling: `num_beams` (beams kept per prompt; 4 when neither `sampling` nor `num_beams` is given),
            `length_penalty` (exponent on the generated length in the finished-hypothesis score),
            `early_stopping` (True, False or "never", see the module docstring), `use_cache` (keep a KV cache,
            re-ordered with the beams; False recomputes everything, same result) and the repetition /
            frequency / presence penalties (applied to the log-probabilities). Sampling fields are ignored.
        num_return_sequences: how many of the best hypotheses to return per prompt (<= num_beams).
        eos_token_id: one id or several; a hypothesis ending with one is finished.
        pad_token_id: filler after shorter hypotheses (default: the first EOS id, as `transformers`).
        logits_processors: applied to the log-probabilities of every step, after the penalties.
        **options: `SamplingConfig` fields, overriding those of `sampling` (e.g. `num_beams=3`).

    Returns:
        `BeamSearchOutput` with `sequences` and `sequences_scores`.
    """
    if sampling is None:
        options.setdefault("num_beams", 4)
    config = resolve_sampling(sampling, options, max_new_tokens)
    num_beams, length_penalty, early_stopping = config.num_beams, config.length_penalty, config.early_stopping
    max_new_tokens = config.max_new_tokens
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(f"input_ids must be (batch, time) with at least one token (got {tuple(input_ids.shape)})")
    if not 1 <= num_return_sequences <= num_beams:
        raise ValueError(
            f"num_return_sequences={num_return_sequences} must be between 1 and num_beams={num_beams}; "
            "raise num_beams or return fewer sequences"
        )
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 for beam search (got {max_new_tokens})")
    batch_size, prompt_len = input_ids.shape
    max_length = prompt_len + max_new_tokens
    block_size, n_cached_virtual = context_window(model)  # prompt/prefix tuning: positions (and cache entries)
    if max_length > block_size:
        raise ValueError(
            f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds the model's context of "
            f"{block_size} tokens; shorten the prompt or lower max_new_tokens"
        )
    device = input_ids.device
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
    fill = pad_token_id if pad_token_id else (eos_ids[0] if eos_ids else (pad_token_id or 0))
    penalties = build_penalties(
        config.repetition_penalty, config.frequency_penalty, config.presence_penalty, prompt_len
    )
    processors = LogitsProcessorList([*penalties, *logits_processors])

    # Keep K candidates per prompt so that num_beams of them can continue even if the best end with EOS.
    beams_to_keep = max(2, 1 + len(eos_ids)) * num_beams
    top_num_beam_mask = torch.zeros(beams_to_keep, dtype=torch.bool, device=device)
    top_num_beam_mask[:num_beams] = True  # only the nb best candidates may enter the finished pool

    running_sequences = torch.full((batch_size, num_beams, max_length), fill, dtype=torch.long, device=device)
    running_sequences[:, :, :prompt_len] = input_ids[:, None, :]
    sequences = running_sequences.clone()  # the finished pool, (B, nb, max_length)
    # Only beam 0 starts "alive", so the first step does not pick the same token in all (identical) beams.
    running_scores = torch.zeros((batch_size, num_beams), device=device)  # summed log-probs
    running_scores[:, 1:] = NEG
    beam_scores = torch.full((batch_size, num_beams), NEG, device=device)  # length-penalised, finished pool
    is_sent_finished = torch.zeros((batch_size, num_beams), dtype=torch.bool, device=device)
    improvable = torch.ones((batch_size, 1), dtype=torch.bool, device=device)  # can running beams still win?
    # Which beam (flat row) each generated token came from; -1 = not generated. Gives the output length.
    running_beam_indices = torch.full((batch_size, num_beams, max_new_tokens), -1, dtype=torch.long, device=device)
    beam_indices = running_beam_indices.clone()
    batch_offset = torch.arange(batch_size, device=device)[:, None] * num_beams  # (B, 1)

    cache = (
        new_kv_cache(model, batch_size * num_beams, max_length + n_cached_virtual, device) if config.use_cache else None
    )
    was_training = model.training
    model.eval()
    cur_len = prompt_len
    fed = 0  # tokens of each beam the cache holds (as in `stream_generate`: not `cache.seq_len`, which also
    # counts a prompt-tuned model's soft prompt)
    try:
        while True:
            # a. next-token log-probs of every running beam
            flat = running_sequences[:, :, :cur_len].reshape(batch_size * num_beams, cur_len)  # (B*nb, T)
            if cache is not None:
                logits = model(flat[:, fed:], kv_cache=cache).logits[:, -1, :]
                fed = cur_len
            else:
                logits = model(flat).logits[:, -1, :]
            log_probs = processors(flat, F.log_softmax(logits.float(), dim=-1))  # (B*nb, V)
            vocab_size = log_probs.size(-1)
            log_probs = log_probs.view(batch_size, num_beams, vocab_size) + running_scores[:, :, None]
            log_probs = log_probs.reshape(batch_size, num_beams * vocab_size)

            # b. the K best continuations over all beams
            topk_log_probs, topk_indices = torch.topk(log_probs, k=beams_to_keep)  # (B, K)
            topk_beam = topk_indices // vocab_size  # which beam each candidate extends
            topk_ids = topk_indices % vocab_size  # the token it adds
            topk_sequences = _gather_beams(running_sequences, topk_beam)  # (B, K, max_length)
            topk_sequences[:, :, cur_len] = topk_ids
            topk_beam_indices = _gather_beams(running_beam_indices, topk_beam)
            topk_beam_indices[:, :, cur_len - prompt_len] = topk_beam + batch_offset

            # c. which candidates are finished: EOS, or the maximum length is reached
            done = torch.isin(topk_ids, eos) | (cur_len + 1 >= max_length)  # (B, K)

            # d. the nb best unfinished candidates keep running
            alive_log_probs = topk_log_probs + done.float() * NEG
            keep = torch.topk(alive_log_probs, k=num_beams)[1]  # (B, nb)
            running_sequences = _gather_beams(topk_sequences, keep)
            running_scores = _gather_beams(alive_log_probs, keep)
            running_beam_indices = _gather_beams(topk_beam_indices, keep)

            # e. finished candidates among the nb best enter the pool if they beat its worst member
            just_finished = done & top_num_beam_mask[None, :]
            finished_scores = topk_log_probs / ((cur_len + 1 - prompt_len) ** length_penalty)
            pool_full = torch.all(is_sent_finished, dim=-1, keepdim=True) & (early_stopping is True)
            finished_scores = finished_scores + pool_full.float() * NEG
            finished_scores = finished_scores + (~improvable).float() * NEG
            finished_scores = finished_scores + (~just_finished).float() * NEG
            merged_scores = torch.cat((beam_scores, finished_scores), dim=1)  # (B, nb + K)
            best = torch.topk(merged_scores, k=num_beams)[1]
            sequences = _gather_beams(torch.cat((sequences, topk_sequences), dim=1), best)
            beam_scores = _gather_beams(merged_scores, best)
            beam_indices = _gather_beams(torch.cat((beam_indices, topk_beam_indices), dim=1), best)
            is_sent_finished = _gather_beams(torch.cat((is_sent_finished, just_finished), dim=1), best)

            # f. the cache follows the surviving beams
            if cache is not None:
                cache.reorder(running_beam_indices[:, :, cur_len - prompt_len].reshape(-1))
            cur_len += 1

            # g. stop when no running beam can improve the pool (the early-stopping heuristic) ...
            if early_stopping == "never" and length_penalty > 0.0:
                best_length = max_length - prompt_len
            else:
                best_length = cur_len - prompt_len
            best_running = running_scores[:, :1] / (best_length**length_penalty)  # (B, 1)
            worst_finished = torch.where(is_sent_finished, beam_scores.min(dim=1, keepdim=True)[0], NEG)
            improvable = improvable & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
            # ... or every pool is full with early_stopping=True, or no candidate can continue (max length).
            pools_full = bool(torch.all(is_sent_finished)) and early_stopping is True
            if not bool(improvable.any()) or pools_full or bool(done.all()):
                break
    finally:
        model.train(was_training)

    sequences = sequences[:, :num_return_sequences].reshape(batch_size * num_return_sequences, max_length)
    scores = beam_scores[:, :num_return_sequences].reshape(-1)
    beam_indices = beam_indices[:, :num_return_sequences].reshape(batch_size * num_return_sequences, -1)
    generated = int((beam_indices >= 0).sum(dim=1).max())
    return BeamSearchOutput(sequences=sequences[:, : prompt_len + generated], sequences_scores=scores)
