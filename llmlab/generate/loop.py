"""The autoregressive decoding loop: prefill the prompt into a KV cache, then feed one token per step.

    for each step:
        logits = model(new tokens, kv_cache)[:, -1]     # (B, V)  next-token logits
        logits = processors(tokens, logits)             # temperature, top-k, top-p, ...
        next   = sampler(logits)                        # (B,)    argmax or a draw
        tokens = cat(tokens, next)

With a KV cache the prompt is run once ("prefill") and every later step runs only the newest token: the
keys/values of earlier positions are read from the cache (`llmlab.nn.kv_cache.KVCache`), so a step costs
O(T) attention instead of a full O(T^2) recompute. The cache is preallocated for prompt + new tokens,
capped at the model's `block_size`.

Context window: a model cannot attend to more than `block_size` positions. When the sequence outgrows it,
the loop does what nanoGPT does and recomputes the next-token logits from the last `block_size` tokens
("cropping") — with or without a cache, so `use_cache=True` and `use_cache=False` give the same tokens.

References:
    - KV caching for Transformer decoding: Pope et al., 2022, "Efficiently Scaling Transformer Inference",
      https://arxiv.org/abs/2211.05102
    - nanoGPT's `generate`: https://github.com/karpathy/nanoGPT/blob/master/model.py
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from llmlab.generate.processors import LogitsProcessor, build_processors
from llmlab.generate.samplers import GreedySampler, MultinomialSampler, Sampler, make_generator


def _eos_tensor(eos_token_id: int | Sequence[int] | None, device: torch.device) -> torch.Tensor | None:
    if eos_token_id is None:
        return None
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    return torch.tensor(ids, dtype=torch.long, device=device)


def _new_cache(model: nn.Module, batch_size: int, max_len: int, device: torch.device):  # -> KVCache
    if hasattr(model, "make_kv_cache"):  # llmlab's GPT sizes the cache itself
        return model.make_kv_cache(batch_size, max_len)
    from llmlab.nn.kv_cache import KVCache

    cfg = model.config
    n_kv_head = cfg.n_kv_head or cfg.n_head
    dtype = next(model.parameters()).dtype
    return KVCache(cfg.n_layer, batch_size, max_len, n_kv_head, cfg.n_embd // cfg.n_head, dtype, device)


def stream_generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    logits_processors: Iterable[LogitsProcessor] = (),
    sampler: Sampler | None = None,
) -> Iterator[torch.Tensor]:
    """Generate tokens one step at a time, yielding each step's new tokens as a LongTensor of shape (B,).

    Args:
        model: a decoder (`llmlab.models.gpt.GPT` or anything with `.config.block_size` and a forward
            `model(input_ids, kv_cache=...) -> output with .logits (B, T, V)`).
        input_ids: the prompt, LongTensor (B, T) with T >= 1 (start from a BOS/EOS token for no prompt).
        max_new_tokens: number of tokens to generate (fewer if every row hits `eos_token_id`).
        temperature: 0 for greedy decoding; otherwise logits are divided by it before sampling.
        top_k: keep only the k most likely tokens (None: no limit).
        top_p: nucleus sampling mass in (0, 1] (None: no limit).
        eos_token_id: one id or several; a row that produces one is finished and is then padded.
        pad_token_id: what finished rows produce afterwards (default: the first `eos_token_id`).
        seed: seeds a private `torch.Generator`, so the sample is reproducible (ignored if `generator`).
        generator: an explicit random source (overrides `seed`).
        use_cache: prefill a KV cache and feed one token per step (same result as recomputing, but faster).
        logits_processors: extra processors (e.g. penalties) run before temperature/top-k/top-p.
        sampler: overrides the default sampler (argmax when temperature == 0, else multinomial).

    Yields:
        LongTensor (B,): the token chosen for every row at this step.
    """
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(
            f"input_ids must be a (batch, time) tensor with at least one token (got shape {tuple(input_ids.shape)}); "
            "start an empty prompt from a BOS/EOS token"
        )
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0 (got {max_new_tokens})")
    processors = build_processors(temperature, top_k, top_p, extra=logits_processors)
    if sampler is None:
        if generator is None:
            generator = make_generator(seed, input_ids.device)
        sampler = GreedySampler() if temperature == 0 else MultinomialSampler(generator)
    block_size = int(model.config.block_size)
    eos = _eos_tensor(eos_token_id, input_ids.device)
    pad = pad_token_id if pad_token_id is not None else (int(eos[0]) if eos is not None else None)

    tokens = input_ids.long()
    batch_size, prompt_len = tokens.shape
    finished = torch.zeros(batch_size, dtype=torch.bool, device=tokens.device)
    cache, cache_capacity = None, 0
    if use_cache and max_new_tokens > 0 and prompt_len < block_size:
        cache_capacity = min(prompt_len + max_new_tokens, block_size)
        cache = _new_cache(model, batch_size, cache_capacity, tokens.device)

    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            with torch.no_grad():
                if cache is not None and tokens.size(1) <= cache_capacity:
                    logits = model(tokens[:, cache.seq_len :], kv_cache=cache).logits[:, -1, :]  # (B, V)
                else:  # no cache, or the sequence outgrew the context: recompute the last block_size tokens
                    cache = None
                    logits = model(tokens[:, -block_size:]).logits[:, -1, :]  # (B, V)
                logits = processors(tokens, logits.float())
                next_tokens = sampler(logits)  # (B,)
            if eos is not None:
                if pad is not None:
                    next_tokens = torch.where(finished, torch.full_like(next_tokens, pad), next_tokens)
                finished = finished | torch.isin(next_tokens, eos)
            tokens = torch.cat([tokens, next_tokens[:, None]], dim=1)
            yield next_tokens
            if eos is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)


def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    eos_token_id: int | Sequence[int] | None = None,
    pad_token_id: int | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    logits_processors: Iterable[LogitsProcessor] = (),
    sampler: Sampler | None = None,
) -> torch.Tensor:
    """Generate up to `max_new_tokens` tokens after `input_ids`; see `stream_generate` for the arguments.

    Returns:
        LongTensor (B, T + n): the prompt followed by the n <= max_new_tokens generated tokens. Generation
        stops early once every row has produced `eos_token_id`; finished rows are padded with `pad_token_id`.
    """
    steps = list(
        stream_generate(
            model,
            input_ids,
            max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            seed=seed,
            generator=generator,
            use_cache=use_cache,
            logits_processors=logits_processors,
            sampler=sampler,
        )
    )
    if not steps:
        return input_ids.long().clone()
    return torch.cat([input_ids.long(), torch.stack(steps, dim=1)], dim=1)
