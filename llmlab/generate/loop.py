"""The autoregressive decoding loop: prefill the prompt into a KV cache, then feed one token per step.

    for each step:
        logits = model(new tokens, kv_cache)[:, -1]     # (B, V)  next-token logits
        logits = processors(tokens, logits)             # temperature, top-k, top-p, ...
        next   = sampler(logits)                        # (B,)    argmax or a draw
        tokens[:, t] = next                             # written into a preallocated (B, T + N) buffer

With a KV cache the prompt is run once ("prefill") and every later step runs only the newest token: the
keys/values of earlier positions are read from the cache (`llmlab.nn.kv_cache.KVCache`), so a step costs
O(T) attention instead of a full O(T^2) recompute. The cache is preallocated for prompt + new tokens,
capped at the model's `block_size`.

Batches of prompts of different lengths are left-padded (`generate_batch` in `batch.py` does it): the
`attention_mask` hides the pads and position ids count only real tokens (`cumsum(mask) - 1`, as in
`transformers`), so every row decodes exactly as it would alone.

Context window: a model cannot attend to more than `block_size` positions. When the sequence outgrows it,
the loop does what nanoGPT does and recomputes the next-token logits from the last `block_size` tokens
("cropping") — with or without a cache, so `use_cache=True` and `use_cache=False` give the same tokens.

References:
    - KV caching for Transformer decoding: Pope et al., 2022, "Efficiently Scaling Transformer Inference",
      https://arxiv.org/abs/2211.05102
    - nanoGPT's `generate`: https://github.com/karpathy/nanoGPT/blob/master/model.py
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from llmlab.config.sampling import SamplingConfig, resolve_sampling
from llmlab.generate.penalties import build_penalties
from llmlab.generate.processors import LogitsProcessor, build_processors
from llmlab.generate.samplers import GreedySampler, MultinomialSampler, Sampler, make_generator
from llmlab.generate.stopping import StoppingCriteria, StopStrings
from llmlab.generate.streamer import Decoder
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.virtual import ReservesPositions, context_length, reserved_positions


def _eos_tensor(eos_token_id: int | Sequence[int] | None, device: torch.device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    return torch.tensor(ids, dtype=torch.long, device=device)


def positions_from_mask(attention_mask: torch.Tensor) -> torch.LongTensor:
    """Position ids (B, T) that count only real tokens: `cumsum(mask) - 1`, pads get 1 (as `transformers`)."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill(attention_mask == 0, 1)


def accepts_position_ids(model: nn.Module) -> bool:
    """Whether `model.forward` takes a `position_ids` keyword (llmlab's Llama and GPT do)."""
    return "position_ids" in inspect.signature(model.forward).parameters


def can_keep_last_logits(model: nn.Module) -> bool:
    """Whether the loop may ask for the last position's logits only (`logits_to_keep=1`).

    True when `model.forward` takes `logits_to_keep` (llmlab's GPT and Llama) and no forward hook is installed:
    a hook may change the positions (prompt tuning prepends virtual tokens and slices them off the logits).
    """
    hooked = bool(model._forward_pre_hooks or model._forward_hooks)
    return not hooked and "logits_to_keep" in inspect.signature(model.forward).parameters


def check_left_padded(attention_mask: torch.Tensor, input_ids: torch.Tensor) -> None:
    """Raise ValueError unless `attention_mask` matches `input_ids` and pads (0) only on the left of each row."""
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask has shape {tuple(attention_mask.shape)} but input_ids has {tuple(input_ids.shape)}; "
            "pass one mask entry per prompt token"
        )
    mask = attention_mask.long()
    if bool((mask[:, -1] == 0).any()) or bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError("attention_mask must be left-padded (0s before the 1s, last token real); pad on the left")


def new_kv_cache(model: nn.Module, batch_size: int, max_len: int, device: torch.device) -> KVCache:
    """A `KVCache` for `batch_size` sequences of up to `max_len` tokens (the model's own `make_kv_cache` if any)."""
    if hasattr(model, "make_kv_cache"):  # llmlab's GPT sizes the cache itself
        return model.make_kv_cache(batch_size, max_len)
    cfg = model.config
    n_kv_head = cfg.n_kv_head or cfg.n_head
    dtype = next(model.parameters()).dtype
    return KVCache(cfg.n_layer, batch_size, max_len, n_kv_head, cfg.n_embd // cfg.n_head, dtype, device)


def _check_given_cache(cache: KVCache, prompt_len: int, total_len: int, block_size: int, n_cached_virtual: int) -> None:
    """A caller's pre-filled cache must hold part of the prompt and have room for the rest and the reply."""
    if n_cached_virtual:
        raise ValueError("a pre-filled kv_cache cannot be used with prompt tuning (its soft prompt is in the cache)")
    if not 0 <= cache.seq_len < prompt_len:
        raise ValueError(
            f"kv_cache holds {cache.seq_len} tokens but the prompt has {prompt_len}; it must hold fewer (at least "
            "the last prompt token is run to get the first logits)"
        )
    if cache.max_len < total_len or total_len > block_size:
        raise ValueError(
            f"prompt + max_new_tokens = {total_len} tokens do not fit the kv_cache ({cache.max_len}) or the "
            f"model's context ({block_size})"
        )


def context_window(model: nn.Module) -> tuple[int, int]:
    """(real tokens that fit in the model's context, KV-cache entries reserved before them).

    The one place decoding asks `llmlab.nn.virtual` about soft prompts/prefixes: prompt and prefix tuning take
    P positions before the first real token, and prompt tuning also P cache entries.
    """
    positions, entries = reserved_positions(model)
    return context_length(model, positions), entries


def cache_prefix_reusable(model: nn.Module) -> bool:
    """Whether cached keys/values of a token prefix stay valid for a later prompt with the same prefix.

    True when no forward hook can change what is cached, except a position shift by a module that reserves
    positions but no cache entries (prefix tuning: consistent across calls). A soft prompt in the cache (prompt
    tuning) or any other hook: False.
    """
    hooks = [*model._forward_pre_hooks.values(), *model._forward_hooks.values()]
    return all(_shifts_positions_only(hook) for hook in hooks)


def _shifts_positions_only(hook: Callable[..., Any]) -> bool:
    """A hook bound to (a method of, or a `functools.partial` over) a module reserving no cache entries."""
    owner = getattr(hook, "__self__", None)
    if owner is None:
        owner = next(iter(getattr(hook, "args", ())), None)
    return isinstance(owner, ReservesPositions) and owner.reserved_positions()[1] == 0


@dataclass
class _Decoding:
    """Everything one `stream_generate` call computes once, before its first step."""

    model: nn.Module
    buf: torch.Tensor  # (B, T + N) prompt, then the generated tokens
    mask_buf: torch.Tensor | None  # (B, T + N) attention mask, None when nothing is padded
    use_positions: bool
    last_only: dict[str, int]

    def forward(self, length: int, start: int, cache: KVCache | None) -> torch.Tensor:
        """Next-token logits (B, V) for buf[:, start:length] (start = cached length or the crop point)."""
        ids = self.buf[:, start:length]
        kwargs: dict[str, Any] = dict(self.last_only)
        if self.mask_buf is not None:
            window = self.mask_buf[:, (0 if cache is not None else start) : length]  # cached + new
            kwargs["attention_mask"] = window
            if self.use_positions:
                kwargs["position_ids"] = positions_from_mask(window)[:, -ids.size(1) :]
        return self.model(ids, kv_cache=cache, **kwargs).logits[:, -1, :]


def _decoding(model: nn.Module, tokens: torch.Tensor, total_len: int, attention_mask: torch.Tensor | None) -> _Decoding:
    """Preallocated buffers: step i writes column prompt_len + i, no per-step torch.cat of the whole sequence."""
    batch_size, prompt_len = tokens.shape
    buf = torch.empty(batch_size, total_len, dtype=torch.long, device=tokens.device)
    buf[:, :prompt_len] = tokens
    mask_buf = None
    if attention_mask is not None:
        check_left_padded(attention_mask, tokens)
        if not bool(attention_mask.bool().all()):  # all-ones: keep the fast mask-free path
            mask_buf = torch.ones(batch_size, total_len, dtype=torch.long, device=tokens.device)
            mask_buf[:, :prompt_len] = attention_mask.long().to(tokens.device)
    use_positions = mask_buf is not None and accepts_position_ids(model)
    last_only = {"logits_to_keep": 1} if can_keep_last_logits(model) else {}
    return _Decoding(model, buf, mask_buf, use_positions, last_only)


def _stopping(
    config: SamplingConfig,
    tokenizer: Decoder | None,
    stopping_criteria: Iterable[StoppingCriteria],
    eos_token_id: int | Sequence[int] | None,
    pad_token_id: int | None,
    input_ids: torch.Tensor,
) -> tuple[list[StoppingCriteria], torch.Tensor | None, int | None]:
    """(criteria, EOS ids tensor, pad id) for one call; ValueError for stop strings without a tokenizer."""
    criteria = list(stopping_criteria)
    if config.stop:
        if tokenizer is None:
            raise ValueError("stop strings are matched on decoded text: pass tokenizer= as well")
        criteria.append(StopStrings(tokenizer, list(config.stop)))
    eos = _eos_tensor(eos_token_id, input_ids.device)
    pad = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos is not None else None)
    if criteria and pad is None and input_ids.size(0) > 1:
        raise ValueError("with stop strings/criteria and several rows, pass pad_token_id (or eos_token_id)")
    return criteria, eos, pad


def _prompt_tokens(input_ids: torch.Tensor) -> torch.Tensor:
    """The prompt as a LongTensor (B, T); ValueError unless it is 2-D with at least one token."""
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(
            f"input_ids must be a (batch, time) tensor with at least one token (got shape {tuple(input_ids.shape)}); "
            "start an empty prompt from a BOS/EOS token"
        )
    return input_ids.long()


def _processing(
    config: SamplingConfig,
    prompt_len: int,
    logits_processors: Iterable[LogitsProcessor],
    sampler: Sampler | None,
    generator: torch.Generator | None,
    device: torch.device,
) -> tuple[LogitsProcessor, Sampler]:
    """The logits processors (penalties, extra processors, temperature/top-k/top-p/min-p) and the sampler."""
    penalties = build_penalties(
        config.repetition_penalty, config.frequency_penalty, config.presence_penalty, prompt_len
    )
    extra = [*penalties, *logits_processors]
    processors = build_processors(
        config.temperature, config.top_k or None, config.top_p, extra=extra, min_p=config.min_p
    )
    if sampler is None:
        if generator is None:
            generator = make_generator(config.seed, device)
        sampler = GreedySampler() if config.temperature == 0 else MultinomialSampler(generator)
    return processors, sampler


def _first_cache(
    model: nn.Module, config: SamplingConfig, kv_cache: KVCache | None, tokens: torch.Tensor, total_len: int
) -> tuple[KVCache | None, int, int, int]:
    """(cache, its capacity in tokens of the sequence, tokens it already holds, context length) for a call."""
    batch_size, prompt_len = tokens.shape
    block_size, n_cached_virtual = context_window(model)
    if kv_cache is not None:
        _check_given_cache(kv_cache, prompt_len, total_len, block_size, n_cached_virtual)
        return kv_cache, total_len, kv_cache.seq_len, block_size
    if config.use_cache and total_len > prompt_len and prompt_len < block_size:
        capacity = min(total_len, block_size)
        return new_kv_cache(model, batch_size, capacity + n_cached_virtual, tokens.device), capacity, 0, block_size
    return None, 0, 0, block_size


def _start(
    model: nn.Module,
    config: SamplingConfig,
    kv_cache: KVCache | None,
    tokens: torch.Tensor,
    attention_mask: torch.Tensor | None,
    compile: bool,
) -> tuple[Any, Any, int, int, int]:
    """(decoding state, cache, its capacity, tokens it holds (fed), context length) for one call.

    With `compile` the state is `llmlab.generate.fast`'s (its own static cache, sized for the whole call).
    """
    prompt_len = tokens.shape[1]
    total_len = prompt_len + config.max_new_tokens
    cache, cache_capacity, fed, block_size = _first_cache(model, config, kv_cache, tokens, total_len)  # fed: cached
    run: Any = _decoding(model, tokens, total_len, attention_mask)
    if compile and config.max_new_tokens > 0:
        from llmlab.generate.fast import compiled_decoding  # torch.compile machinery: imported only when asked

        run = compiled_decoding(model, run.buf, prompt_len, attention_mask, kv_cache)
        cache, cache_capacity = run, total_len
    return run, cache, cache_capacity, fed, block_size


def stream_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    sampling: SamplingConfig | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    tokenizer: Decoder | None = None,
    stopping_criteria: Iterable[StoppingCriteria] = (),
    attention_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    logits_processors: Iterable[LogitsProcessor] = (),
    sampler: Sampler | None = None,
    kv_cache: KVCache | None = None,
    compile: bool = False,
    **options: Any,
) -> Iterator[torch.Tensor]:
    """Generate tokens one step at a time, yielding each step's new tokens as a LongTensor of shape (B,).

    Args:
        model: a decoder with `.config.block_size` and `model(ids, kv_cache=...) -> .logits (B, T, V)`.
        input_ids: the prompt, LongTensor (B, T) with T >= 1 (start from a BOS/EOS token for no prompt).
        max_new_tokens: overrides `sampling.max_new_tokens` (fewer are generated if every row finishes).
        sampling: temperature, top-k/p, min-p, penalties, stop strings, seed, use_cache (`SamplingConfig`). The
            token completing a stop string is the row's last (`llmlab.generate.text` also cuts the text).
        eos_token_id: one id or several; a row that produces one is finished and is then padded.
        pad_token_id: what finished rows produce afterwards (default: the first `eos_token_id`).
        tokenizer: decodes tokens for the stop strings.
        stopping_criteria: more criteria (`llmlab.generate.stopping`), called after every step.
        attention_mask: (B, T) 1 for real prompt tokens, 0 for left padding (None: no padding).
        generator: an explicit random source (overrides `sampling.seed`).
        logits_processors: extra processors run first (after the penalties), before temperature/top-k/top-p.
        sampler: overrides the default sampler (argmax when temperature == 0, else multinomial).
        kv_cache: holds the first `kv_cache.seq_len` prompt tokens (a chat's earlier turns): only the rest is
            prefilled; see `_check_given_cache`. Each new token is added to it when the next is asked for.
        compile: decode with `llmlab.generate.fast` (Llama: static cache, torch.compile'd step; slow 1st call).
        **options: `SamplingConfig` fields, overriding those of `sampling` (e.g. `temperature=0`).

    Yields:
        LongTensor (B,): the token chosen for every row at this step.
    """
    config = resolve_sampling(sampling, options, max_new_tokens)
    tokens = _prompt_tokens(input_ids)
    batch_size, prompt_len = tokens.shape
    processors, sampler = _processing(config, prompt_len, logits_processors, sampler, generator, tokens.device)
    criteria, eos, pad = _stopping(config, tokenizer, stopping_criteria, eos_token_id, pad_token_id, tokens)
    run, cache, cache_capacity, fed, block_size = _start(model, config, kv_cache, tokens, attention_mask, compile)
    buf = run.buf  # (B, T + N)
    # `finished` can only change with EOS ids or stopping criteria; without them no per-step sync is needed.
    can_finish = eos is not None or bool(criteria)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=tokens.device)
    was_training = model.training
    model.eval()
    try:
        for step in range(config.max_new_tokens):
            length = prompt_len + step  # tokens so far
            # inference_mode only around the step (never across `yield`, which runs the caller's code).
            with torch.inference_mode():
                if cache is not None and length <= cache_capacity:
                    logits = run.forward(length, fed, cache)  # (B, V)
                    fed = length
                else:  # no cache, or the sequence outgrew the context: recompute the last block_size tokens
                    cache = None
                    logits = run.forward(length, max(length - block_size, 0), None)  # (B, V)
                logits = processors(buf[:, :length], logits.float())
                next_tokens = sampler(logits)  # (B,)
                if can_finish:
                    if pad is not None:
                        next_tokens = torch.where(finished, torch.full_like(next_tokens, pad), next_tokens)
                    if eos is not None:
                        finished = finished | torch.isin(next_tokens, eos)
                buf[:, length] = next_tokens
                for criterion in criteria:
                    finished = finished | criterion(buf[:, : length + 1], prompt_len).to(finished.device)
            yield next_tokens.clone()  # a normal tensor: usable in autograd code afterwards
            if can_finish and bool(finished.all()):
                break
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int | None = None,
    *,
    sampling: SamplingConfig | None = None,
    **options: Any,
) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens after `input_ids`; the arguments are `stream_generate`'s.

    Returns:
        LongTensor (B, T + n): the prompt followed by the n <= max_new_tokens generated tokens. Generation
        stops early once every row is finished (EOS, stop string or criterion); finished rows are padded
        with `pad_token_id`.
    """
    steps = list(stream_generate(model, input_ids, max_new_tokens, sampling=sampling, **options))
    if not steps:
        return input_ids.long().clone()
    return torch.cat([input_ids.long(), torch.stack(steps, dim=1)], dim=1)
