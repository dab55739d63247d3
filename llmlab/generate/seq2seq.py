"""Decoding for encoder-decoder models (T5, BART): greedy, sampling and beam search.

    ids = seq2seq_generate(model, input_ids, attention_mask, max_new_tokens=32, num_beams=4)

The encoder runs once per call. The decoder starts from `config.decoder_start_token_id` and feeds one token per
step through a `Seq2SeqCache`: its self-attention keys/values grow by one token per step, and the
cross-attention keys/values are projected from the encoder output on the first step only and then read from
the cache (re-ordered with the beams in beam search). Greedy/sampling use the logits processors and samplers
of `llmlab.generate` (`SamplingConfig`); beam search runs the `transformers`-equal beam bookkeeping of
`llmlab.generate.beam` (`BeamState`), so greedy and beam outputs equal `transformers`' `generate`.

References: Sutskever et al. 2014 (https://arxiv.org/abs/1409.3215); T5 (https://arxiv.org/abs/1910.10683).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.config.sampling import SamplingConfig
from llmlab.generate.beam import BeamState
from llmlab.generate.penalties import build_penalties
from llmlab.generate.processors import LogitsProcessorList, build_processors
from llmlab.generate.samplers import GreedySampler, MultinomialSampler, make_generator


def _resolve(
    sampling: SamplingConfig | None, max_new_tokens: int, num_beams: int, length_penalty: float
) -> SamplingConfig:
    """The call's `SamplingConfig`: greedy by default; explicit non-default num_beams/length_penalty win."""
    config = sampling if sampling is not None else SamplingConfig(temperature=0.0)
    changes: dict[str, Any] = {"max_new_tokens": max_new_tokens}
    if num_beams != 1 or sampling is None:
        changes["num_beams"] = num_beams
    if length_penalty != 1.0 or sampling is None:
        changes["length_penalty"] = length_penalty
    return config.replace(**changes).validate()


def _until_eos(row: list[int], eos_ids: list[int]) -> list[int]:
    """The tokens of `row` up to and including the first EOS (all of them when there is none)."""
    for i, token in enumerate(row):
        if token in eos_ids:
            return row[: i + 1]
    return row


def _check(model: nn.Module, input_ids: torch.Tensor, config: SamplingConfig) -> None:
    """ValueError for inputs this decoder cannot run (one line naming the fix)."""
    if not getattr(model, "is_encoder_decoder", False):
        raise ValueError(f"{type(model).__name__} is not an encoder-decoder; use llmlab.generate.generate for decoders")
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(
            f"input_ids must be (batch, source length) with at least one token (got {tuple(input_ids.shape)})"
        )
    if config.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 (got {config.max_new_tokens})")
    if 1 + config.max_new_tokens > model.config.block_size:
        raise ValueError(
            f"max_new_tokens={config.max_new_tokens} + the start token exceed the model's block_size "
            f"{model.config.block_size}; lower max_new_tokens"
        )


def _sample(
    model: nn.Module, h: torch.Tensor, mask: torch.Tensor | None, config: SamplingConfig, eos_ids: list[int]
) -> torch.Tensor:
    """Greedy or sampled decoding; (B, 1 + n) decoder tokens (start token first, pad after a row's EOS)."""
    b, c = h.shape[0], model.config
    penalties = build_penalties(config.repetition_penalty, config.frequency_penalty, config.presence_penalty, 1)
    processors = build_processors(
        config.temperature, config.top_k or None, config.top_p, extra=penalties, min_p=config.min_p
    )
    greedy = config.temperature == 0
    sampler = GreedySampler() if greedy else MultinomialSampler(make_generator(config.seed, h.device))
    tokens = torch.full((b, 1), c.decoder_start_token_id, dtype=torch.long, device=h.device)
    cache = model.make_kv_cache(b, 1 + config.max_new_tokens) if config.use_cache else None
    eos = torch.tensor(eos_ids, dtype=torch.long, device=h.device)
    finished = torch.zeros(b, dtype=torch.bool, device=h.device)
    for _ in range(config.max_new_tokens):
        new = tokens[:, -1:] if cache is not None and cache.seq_len else tokens
        logits = model.decode(new, h, mask, cache)[:, -1].float()  # (B, V)
        next_ids = sampler(processors(tokens, logits))  # (B,)
        next_ids = next_ids.masked_fill(finished, c.pad_token_id)
        tokens = torch.cat([tokens, next_ids[:, None]], dim=1)
        finished |= torch.isin(next_ids, eos)
        if bool(finished.all()):
            break
    return tokens


def _beam(
    model: nn.Module, h: torch.Tensor, mask: torch.Tensor | None, config: SamplingConfig, eos_ids: list[int]
) -> torch.Tensor:
    """Beam search with `llmlab.generate.beam`'s bookkeeping; (B, 1 + n) best hypotheses (start token first)."""
    nb, c = config.num_beams, model.config
    h = h.repeat_interleave(nb, dim=0)  # (B*nb, S, C): every beam of a source reads its encoder output
    mask = mask.repeat_interleave(nb, dim=0) if mask is not None else None
    start = torch.full((h.shape[0] // nb, 1), c.decoder_start_token_id, dtype=torch.long, device=h.device)
    fill = c.pad_token_id if c.pad_token_id is not None else (eos_ids[0] if eos_ids else 0)  # T5 pads with 0
    beams = BeamState(start, config, eos_ids, fill)
    penalties = build_penalties(config.repetition_penalty, config.frequency_penalty, config.presence_penalty, 1)
    processors = LogitsProcessorList(penalties)
    cache = model.make_kv_cache(h.shape[0], beams.max_length) if config.use_cache else None
    cur_len = 1
    while True:
        flat = beams.flat(cur_len)  # (B*nb, cur_len)
        new = flat[:, -1:] if cache is not None and cache.seq_len else flat
        logits = model.decode(new, h, mask, cache)[:, -1]
        done, parents = beams.step(processors(flat, F.log_softmax(logits.float(), dim=-1)), cur_len)
        if cache is not None:
            cache.reorder(parents)  # self- and cross-attention entries follow the surviving beams
        cur_len += 1
        if beams.finished(cur_len, done):
            return beams.output(1).sequences


@torch.no_grad()
def seq2seq_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    max_new_tokens: int = 64,
    num_beams: int = 1,
    sampling: SamplingConfig | None = None,
    length_penalty: float = 1.0,
    eos_token_id: int | Sequence[int] | None = None,
) -> list[list[int]]:
    """Generate target ids for each source row with an encoder-decoder (`llmlab.models.seq2seq.Seq2SeqLM`).

    Args:
        model: a T5 or BART model (`encode`, `decode`, `make_kv_cache`, `config.decoder_start_token_id`).
        input_ids: (B, S) source ids (right-padded), with `attention_mask` (B, S) 1 = real token.
        max_new_tokens: the most target tokens per row.
        num_beams: beam search with this many beams (1 = greedy or sampling); overrides `sampling.num_beams`
            when not 1.
        sampling: temperature/top-k/top-p/min-p/penalties/seed/use_cache (default: greedy).
        length_penalty: beam score = sum log-prob / length**length_penalty (overrides `sampling`'s when not 1.0).
        eos_token_id: id(s) that end a row (default `model.config.eos_token_id`).

    Returns:
        The generated ids of each row: decoder start excluded, EOS kept (as `transformers`), nothing after it.
    """
    config = _resolve(sampling, max_new_tokens, num_beams, length_penalty)
    _check(model, input_ids, config)
    eos = model.config.eos_token_id if eos_token_id is None else eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos)
    was_training = model.training
    model.eval()
    try:
        h = model.encode(input_ids, attention_mask)  # (B, S, C): the encoder runs once
        run = _beam if config.num_beams > 1 else _sample
        tokens = run(model, h, attention_mask, config, eos_ids)
    finally:
        model.train(was_training)
    return [_until_eos(row[1:], eos_ids) for row in tokens.tolist()]
