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

from llmlab.config.sampling import SamplingConfig, resolve_sampling
from llmlab.generate.loop import context_window, new_kv_cache
from llmlab.generate.penalties import build_penalties
from llmlab.generate.processors import LogitsProcessor, LogitsProcessorList

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


class BeamState:
    """The running beams and the finished pool of one `beam_search` call (the tensors of `transformers`)."""

    def __init__(self, input_ids: torch.Tensor, config: SamplingConfig, eos_ids: list[int], fill: int) -> None:
        batch_size, self.prompt_len = input_ids.shape
        nb, device = config.num_beams, input_ids.device
        self.batch_size, self.num_beams, self.config = batch_size, nb, config
        self.max_length = self.prompt_len + config.max_new_tokens
        self.eos = torch.tensor(eos_ids, dtype=torch.long, device=device)
        # Keep K candidates per prompt so that num_beams of them can continue even if the best end with EOS.
        self.beams_to_keep = max(2, 1 + len(eos_ids)) * nb
        self.top_num_beam_mask = torch.zeros(self.beams_to_keep, dtype=torch.bool, device=device)
        self.top_num_beam_mask[:nb] = True  # only the nb best candidates may enter the finished pool
        self.running_sequences = torch.full((batch_size, nb, self.max_length), fill, dtype=torch.long, device=device)
        self.running_sequences[:, :, : self.prompt_len] = input_ids[:, None, :]
        self.sequences = self.running_sequences.clone()  # the finished pool, (B, nb, max_length)
        # Only beam 0 starts "alive", so the first step does not pick the same token in all (identical) beams.
        self.running_scores = torch.zeros((batch_size, nb), device=device)  # summed log-probs
        self.running_scores[:, 1:] = NEG
        self.beam_scores = torch.full((batch_size, nb), NEG, device=device)  # length-penalised, finished pool
        self.is_sent_finished = torch.zeros((batch_size, nb), dtype=torch.bool, device=device)
        self.improvable = torch.ones((batch_size, 1), dtype=torch.bool, device=device)  # can running beams win?
        # Which beam (flat row) each generated token came from; -1 = not generated. Gives the output length.
        new = config.max_new_tokens
        self.running_beam_indices = torch.full((batch_size, nb, new), -1, dtype=torch.long, device=device)
        self.beam_indices = self.running_beam_indices.clone()
        self.batch_offset = torch.arange(batch_size, device=device)[:, None] * nb  # (B, 1)

    def flat(self, cur_len: int) -> torch.Tensor:
        """The running sequences so far as rows, (B*nb, cur_len)."""
        return self.running_sequences[:, :, :cur_len].reshape(self.batch_size * self.num_beams, cur_len)

    def step(self, log_probs: torch.Tensor, cur_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Extend every beam by the log-probs (B*nb, V); return (done (B, K), the parent row of each new beam)."""
        b, nb, offset = self.batch_size, self.num_beams, cur_len - self.prompt_len
        vocab_size = log_probs.size(-1)
        log_probs = log_probs.view(b, nb, vocab_size) + self.running_scores[:, :, None]
        log_probs = log_probs.reshape(b, nb * vocab_size)
        # b. the K best continuations over all beams
        topk_log_probs, topk_indices = torch.topk(log_probs, k=self.beams_to_keep)  # (B, K)
        topk_beam = topk_indices // vocab_size  # which beam each candidate extends
        topk_ids = topk_indices % vocab_size  # the token it adds
        topk_sequences = _gather_beams(self.running_sequences, topk_beam)  # (B, K, max_length)
        topk_sequences[:, :, cur_len] = topk_ids
        topk_beam_indices = _gather_beams(self.running_beam_indices, topk_beam)
        topk_beam_indices[:, :, offset] = topk_beam + self.batch_offset
        # c. which candidates are finished: EOS, or the maximum length is reached
        done = torch.isin(topk_ids, self.eos) | (cur_len + 1 >= self.max_length)  # (B, K)
        # d. the nb best unfinished candidates keep running
        alive_log_probs = topk_log_probs + done.float() * NEG
        keep = torch.topk(alive_log_probs, k=nb)[1]  # (B, nb)
        self.running_sequences = _gather_beams(topk_sequences, keep)
        self.running_scores = _gather_beams(alive_log_probs, keep)
        self.running_beam_indices = _gather_beams(topk_beam_indices, keep)
        # e. finished candidates among the nb best enter the pool if they beat its worst member
        just_finished = done & self.top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / ((cur_len + 1 - self.prompt_len) ** self.config.length_penalty)
        pool_full = torch.all(self.is_sent_finished, dim=-1, keepdim=True) & (self.config.early_stopping is True)
        finished_scores = finished_scores + pool_full.float() * NEG
        finished_scores = finished_scores + (~self.improvable).float() * NEG
        finished_scores = finished_scores + (~just_finished).float() * NEG
        merged_scores = torch.cat((self.beam_scores, finished_scores), dim=1)  # (B, nb + K)
        best = torch.topk(merged_scores, k=nb)[1]
        self.sequences = _gather_beams(torch.cat((self.sequences, topk_sequences), dim=1), best)
        self.beam_scores = _gather_beams(merged_scores, best)
        self.beam_indices = _gather_beams(torch.cat((self.beam_indices, topk_beam_indices), dim=1), best)
        self.is_sent_finished = _gather_beams(torch.cat((self.is_sent_finished, just_finished), dim=1), best)
        return done, self.running_beam_indices[:, :, offset].reshape(-1)

    def finished(self, cur_len: int, done: torch.Tensor) -> bool:
        """g. Whether to stop: no running beam can improve the pool (the early-stopping heuristic), every pool
        is full with early_stopping=True, or no candidate can continue (max length)."""
        length_penalty, early_stopping = self.config.length_penalty, self.config.early_stopping
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = self.max_length - self.prompt_len
        else:
            best_length = cur_len - self.prompt_len
        best_running = self.running_scores[:, :1] / (best_length**length_penalty)  # (B, 1)
        worst_finished = torch.where(self.is_sent_finished, self.beam_scores.min(dim=1, keepdim=True)[0], NEG)
        self.improvable = self.improvable & torch.any(best_running > worst_finished, dim=-1, keepdim=True)
        pools_full = bool(torch.all(self.is_sent_finished)) and early_stopping is True
        return not bool(self.improvable.any()) or pools_full or bool(done.all())

    def output(self, num_return_sequences: int) -> BeamSearchOutput:
        """The best `num_return_sequences` hypotheses per prompt, cut to the longest generated length."""
        n = self.batch_size * num_return_sequences
        sequences = self.sequences[:, :num_return_sequences].reshape(n, self.max_length)
        scores = self.beam_scores[:, :num_return_sequences].reshape(-1)
        beam_indices = self.beam_indices[:, :num_return_sequences].reshape(n, -1)
        generated = int((beam_indices >= 0).sum(dim=1).max())
        return BeamSearchOutput(sequences=sequences[:, : self.prompt_len + generated], sequences_scores=scores)


def _check_beam_args(model: nn.Module, input_ids: torch.Tensor, config: SamplingConfig, num_return: int) -> int:
    """ValueError for arguments beam search cannot use; returns the KV-cache entries the model reserves."""
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(f"input_ids must be (batch, time) with at least one token (got {tuple(input_ids.shape)})")
    if not 1 <= num_return <= config.num_beams:
        raise ValueError(
            f"num_return_sequences={num_return} must be between 1 and num_beams={config.num_beams}; "
            "raise num_beams or return fewer sequences"
        )
    if config.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 for beam search (got {config.max_new_tokens})")
    prompt_len = input_ids.size(1)
    block_size, n_cached_virtual = context_window(model)  # prompt/prefix tuning: positions (and cache entries)
    if prompt_len + config.max_new_tokens > block_size:
        raise ValueError(
            f"prompt of {prompt_len} tokens + max_new_tokens={config.max_new_tokens} exceeds the model's context of "
            f"{block_size} tokens; shorten the prompt or lower max_new_tokens"
        )
    return n_cached_virtual


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
    n_cached_virtual = _check_beam_args(model, input_ids, config, num_return_sequences)
    eos_ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id or [])
    fill = pad_token_id if pad_token_id else (eos_ids[0] if eos_ids else (pad_token_id or 0))
    beams = BeamState(input_ids, config, eos_ids, fill)
    penalties = build_penalties(
        config.repetition_penalty, config.frequency_penalty, config.presence_penalty, beams.prompt_len
    )
    processors = LogitsProcessorList([*penalties, *logits_processors])
    rows = input_ids.size(0) * config.num_beams
    cache = (
        new_kv_cache(model, rows, beams.max_length + n_cached_virtual, input_ids.device) if config.use_cache else None
    )
    was_training = model.training
    model.eval()
    cur_len = beams.prompt_len
    fed = 0  # tokens of each beam the cache holds (as in `stream_generate`: not `cache.seq_len`, which also
    # counts a prompt-tuned model's soft prompt)
    try:
        while True:
            # a. next-token log-probs of every running beam
            flat = beams.flat(cur_len)  # (B*nb, T)
            if cache is not None:
                logits = model(flat[:, fed:], kv_cache=cache).logits[:, -1, :]
                fed = cur_len
            else:
                logits = model(flat).logits[:, -1, :]
            log_probs = processors(flat, F.log_softmax(logits.float(), dim=-1))  # (B*nb, V)
            done, parents = beams.step(log_probs, cur_len)
            if cache is not None:  # f. the cache follows the surviving beams
                cache.reorder(parents)
            cur_len += 1
            if beams.finished(cur_len, done):
                break
    finally:
        model.train(was_training)
    return beams.output(num_return_sequences)
