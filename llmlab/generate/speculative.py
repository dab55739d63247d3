"""Speculative decoding with greedy verification: a cheap guess of k tokens, checked by ONE target forward.

Decoding is memory-bound: a forward over k+1 tokens costs about as much as a forward over 1. So guess k
next tokens cheaply, run the target once on [last token, d_1 .. d_k] and keep the guesses it agrees with:

    g_1 .. g_{k+1} = argmax(target logits at the k+1 positions)      # what greedy decoding would pick
    n = number of leading i with d_i == g_i                           # accepted guesses
    append d_1 .. d_n and g_{n+1}                                     # n+1 tokens for one target forward

Every appended token is the target's own argmax given the tokens before it, so the output is IDENTICAL to
plain greedy decoding of the target (up to float rounding of a k+1-token forward vs 1-token forwards); a
bad guess only costs speed. Rejected positions are dropped from the preallocated KV caches by resetting
`cache.seq_len` to the accepted length (the stale entries beyond it are overwritten later).

Two guessers:
    - a draft model (Leviathan et al., 2023): a smaller model with the same vocabulary decodes k tokens
      greedily with its own KV cache;
    - prompt lookup (Saxena, 2023): no model at all. The last n tokens (n = max_ngram .. 1) are searched for
      earlier in the sequence and the k tokens that followed that earlier occurrence are proposed. Great for
      summarising, editing, extraction and code, where the output copies spans of the input.

References:
    - Leviathan, Kalman & Matias, 2023, "Fast Inference from Transformers via Speculative Decoding",
      https://arxiv.org/abs/2211.17192 (greedy verification is their method at temperature 0)
    - Chen et al., 2023, "Accelerating LLM Decoding with Speculative Sampling", https://arxiv.org/abs/2302.01318
    - Prompt lookup decoding: https://github.com/apoorvumang/prompt-lookup-decoding
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from llmlab.config.sampling import SamplingConfig, resolve_sampling
from llmlab.generate.loop import context_window, new_kv_cache


@dataclass
class SpeculativeStats:
    """Counters of one `speculative_generate` call.

    Attributes:
        proposed: draft tokens proposed in total.
        accepted: draft tokens the target agreed with.
        target_forwards: forward passes of the target model (plain greedy needs one per new token).
        new_tokens: tokens generated.
    """

    proposed: int = 0
    accepted: int = 0
    target_forwards: int = 0
    new_tokens: int = 0

    @property
    def acceptance_rate(self) -> float:
        """accepted / proposed (0 when nothing was proposed)."""
        return self.accepted / self.proposed if self.proposed else 0.0

    @property
    def tokens_per_forward(self) -> float:
        """New tokens per target forward: 1.0 for plain greedy decoding, up to k + 1 here."""
        return self.new_tokens / self.target_forwards if self.target_forwards else 0.0


def prompt_lookup_candidates(tokens: Sequence[int], max_ngram: int = 3, num_tokens: int = 10) -> list[int]:
    """Propose up to `num_tokens` tokens by finding the sequence's last n-gram earlier in the sequence.

    Tries n = max_ngram down to 1; for the first (earliest) earlier occurrence of the last n tokens, returns
    the tokens that followed it. Returns [] when no n-gram recurs (the step then decodes one token).
    """
    length = len(tokens)
    for n in range(min(max_ngram, length - 1), 0, -1):
        ngram = list(tokens[length - n :])
        for start in range(length - n):  # earlier occurrences only (not the suffix itself)
            if list(tokens[start : start + n]) == ngram:
                follow = start + n
                return list(tokens[follow : follow + num_tokens])
    return []


def _draft_candidates(draft: nn.Module, cache, tokens: list[int], k: int, device: torch.device) -> list[int]:  # noqa: ANN001
    """Decode k tokens greedily with the draft model; its cache ends up holding tokens + the first k-1 drafts."""
    out: list[int] = []
    for _ in range(k):
        seq = tokens + out
        ids = torch.tensor([seq[cache.seq_len :]], device=device)  # (1, uncached)
        out.append(int(draft(ids, kv_cache=cache).logits[0, -1].argmax()))
    return out


def _check_speculative_args(
    model: nn.Module,
    draft_model: nn.Module | None,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    num_draft_tokens: int,
    max_ngram: int,
) -> None:
    """ValueError for arguments speculative decoding cannot use (shapes, context, prompt tuning, vocabularies)."""
    if input_ids.dim() != 2 or input_ids.size(0) != 1 or input_ids.size(1) == 0:
        raise ValueError(f"speculative_generate takes one prompt of shape (1, T>=1) (got {tuple(input_ids.shape)})")
    if num_draft_tokens < 1 or max_ngram < 1:
        raise ValueError(f"num_draft_tokens and max_ngram must be >= 1 (got {num_draft_tokens}, {max_ngram})")
    prompt_len = input_ids.size(1)
    total = prompt_len + max_new_tokens
    for name, m in (("model", model), ("draft_model", draft_model)):
        if m is None:
            continue
        context, n_cached_virtual = context_window(m)
        if n_cached_virtual:
            raise ValueError(
                f"speculative decoding cannot use a prompt-tuned {name} (its soft prompt sits in the KV cache it "
                "rolls back); decode it with sampling/greedy or beam search"
            )
        if total > context:
            raise ValueError(
                f"prompt of {prompt_len} tokens + max_new_tokens={max_new_tokens} exceeds the {name}'s context of "
                f"{context} tokens; shorten the prompt or lower max_new_tokens"
            )
    if draft_model is not None:
        v_target, v_draft = _vocab_size(model), _vocab_size(draft_model)
        if v_target is not None and v_draft is not None and v_target != v_draft:
            raise ValueError(f"draft_model has vocab_size {v_draft} but model has {v_target}; they must share one")


@torch.no_grad()
def speculative_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    sampling: SamplingConfig | None = None,
    draft_model: nn.Module | None = None,
    num_draft_tokens: int = 5,
    max_ngram: int = 3,
    eos_token_id: int | Sequence[int] | None = None,
) -> tuple[torch.LongTensor, SpeculativeStats]:
    """Greedy decoding of `model`, accelerated by a draft model or, without one, by prompt lookup.

    Args:
        model: the target decoder (llmlab `Llama`, `GPT`, ...).
        input_ids: (1, T) prompt (one sequence).
        max_new_tokens: the most tokens to generate (overrides `sampling.max_new_tokens`); prompt +
            max_new_tokens must fit in `block_size`.
        sampling: only `max_new_tokens` applies: the output is greedy (`SamplingConfig`).
        draft_model: a smaller decoder with the same vocabulary; None uses prompt lookup.
        num_draft_tokens: k, the guesses per step (>= 1).
        max_ngram: longest n-gram prompt lookup matches (>= 1).
        eos_token_id: one id or several; generation stops after the first.

    Returns:
        (tokens (1, T + n), stats): the same tokens as `generate(model, input_ids, max_new_tokens,
        temperature=0, eos_token_id=...)`, and the acceptance counters.
    """
    max_new_tokens = resolve_sampling(sampling, {}, max_new_tokens).max_new_tokens
    _check_speculative_args(model, draft_model, input_ids, max_new_tokens, num_draft_tokens, max_ngram)
    prompt_len = input_ids.size(1)
    total = prompt_len + max_new_tokens
    eos = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id or ())
    device = input_ids.device
    tokens = [int(t) for t in input_ids[0].tolist()]
    stats = SpeculativeStats()
    cache = new_kv_cache(model, 1, total, device)
    draft_cache = new_kv_cache(draft_model, 1, total, device) if draft_model is not None else None

    models = [m for m in (model, draft_model) if m is not None]
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        # Prefill all but the last prompt token: the target cache always lags the sequence by one token.
        if prompt_len > 1:
            model(input_ids[:, :-1], kv_cache=cache)
        while len(tokens) - prompt_len < max_new_tokens:
            remaining = max_new_tokens - (len(tokens) - prompt_len)
            k = min(num_draft_tokens, remaining - 1)  # accepted + the target's own token must fit
            if k == 0:
                draft = []
            elif draft_model is not None:
                draft = _draft_candidates(draft_model, draft_cache, tokens, k, device)
            else:
                draft = prompt_lookup_candidates(tokens, max_ngram, k)
            # One target forward over [last token, d_1 .. d_k]: logits at position i predict token i + 1.
            start = cache.seq_len  # == len(tokens) - 1
            ids = torch.tensor([tokens[start:] + draft], device=device)  # (1, 1 + k)
            greedy = model(ids, kv_cache=cache).logits[0].argmax(-1).tolist()  # (1 + k,)
            stats.target_forwards += 1
            new = _accepted_tokens(draft, greedy, eos, stats)
            tokens += new
            # Roll the caches back: keep only entries of tokens whose successors are now known to be right.
            cache.crop(len(tokens) - 1)
            if draft_cache is not None:
                draft_cache.crop(min(draft_cache.seq_len, len(tokens) - 1))
            if new[-1] in eos:
                break
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.train(mode)
    stats.new_tokens = len(tokens) - prompt_len
    return torch.tensor([tokens], dtype=torch.long, device=device), stats


def _accepted_tokens(draft: list[int], greedy: list[int], eos: set[int], stats: SpeculativeStats) -> list[int]:
    """The longest draft prefix the target agrees with, plus the target's own next token; cut after an EOS."""
    n = 0
    while n < len(draft) and draft[n] == greedy[n]:
        n += 1
    stats.proposed += len(draft)
    stats.accepted += n
    new = draft[:n] + [greedy[n]]
    for i, t in enumerate(new):  # stop right after an EOS
        if t in eos:
            return new[: i + 1]
    return new


def _vocab_size(model: nn.Module) -> int | None:
    return getattr(model.config, "vocab_size", None)
