"""Fast CPU decoding for Llama-family models: fused projections, a static KV cache, one compiled step.

Eager decoding of SmolLM2 (30 layers) spends most of a step in Python and in `F.linear` matrix-vector products
that stream fp32 weights at ~10 GB/s. `FastDecoder` removes both:

- an inference view of the model (`FastLlama`) with q/k/v and gate/up fused into one projection each
  (`llmlab.generate.fast_weights`): 2 matmuls fewer per layer; float, int8 and int4 layers alike;
- a static KV cache (`StaticCache`): (layers, B, kv heads, max_len, head dim) tensors allocated once; a step
  writes its keys/values at its slot (`index_copy_`) and attends over the WHOLE cache with a boolean mask
  (key slot <= query slot, and not padding), so every step has the same shapes;
- the whole one-token step (embedding, 30 layers, norm, LM head) compiled by `torch.compile` (Inductor's C++
  backend) with `dynamic=False`: one graph per (batch, max_len) shape, max_len rounded up to `CACHE_BUCKET`.
  The prompt runs the same static-cache code eagerly (its matmuls are GEMMs, where MKL is already fast, and
  a second compiled graph would double the warm-up); prompts are left-padded to a power-of-two bucket;
- matmuls with few rows (a decode step) as multiply-and-sum loops that Inductor vectorises over the packed
  weights (`llmlab.compress.kernels`), prompt-sized ones as MKL GEMMs.

Greedy tokens equal the eager `stream_generate`'s (tests/generate/test_fast.py). Entry points:
`stream_generate(..., compile=True)` (`llmlab generate --compile`) and `FastDecoder(model).generate(ids, n)`.

References: static KV cache + torch.compile as in "Accelerating generative AI with PyTorch II: GPT, Fast"
(https://pytorch.org/blog/accelerating-generative-ai-2/); KV caching: Pope et al. 2022,
https://arxiv.org/abs/2211.05102.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.generate.fast_weights import FastLlama, check_supported
from llmlab.nn.virtual import reserved_positions

CACHE_BUCKET = 128
"""max_len (prompt bucket + new tokens) is rounded up to a multiple of this: fewer distinct compiled shapes."""
MIN_PROMPT_BUCKET = 16
INDUCTOR_OPTIONS = {"realize_opcount_threshold": 0}
"""Inductor settings of the compiled step. By default Inductor inlines cheap element-wise producers (RMSNorm,
SiLU(gate) * up, the residual add) into the matrix-vector reduction that consumes them, recomputing them for
every output row: the LM head then reads its 576 inputs 49,152 times through the norm. Realising every
element-wise result as a small buffer first halved the int8 step on SmolLM2 (23.7 -> 13.7 ms, 2 threads)."""


def prompt_bucket(prompt_len: int) -> int:
    """The padded prompt length: the next power of two >= prompt_len (at least `MIN_PROMPT_BUCKET`)."""
    bucket = MIN_PROMPT_BUCKET
    while bucket < prompt_len:
        bucket *= 2
    return bucket


@dataclass
class StaticCache:
    """Keys/values (layers, B, kv heads, max_len, head dim) and which slots hold real tokens (B, max_len)."""

    keys: torch.Tensor
    values: torch.Tensor
    valid: torch.Tensor  # (B, max_len) bool: False for left padding (slots past the sequence are masked causally)
    offset: torch.Tensor  # (B, 1) long: pads before each row's first real token (position = slot - offset)

    @property
    def max_len(self) -> int:
        return self.keys.shape[3]


class FastDecoder:
    """A compiled, static-shape decoder for one Llama model (weights shared with it, projections fused).

    Args:
        model: an llmlab `Llama` (float, or with Int8Linear/Int4Linear-style layers exposing their buffers).
        compile: compile the forward with torch.compile (False: the same static-cache code run eagerly).
        fuse: fuse q/k/v and gate/up into one projection each (copies those weights once).
    """

    def __init__(self, model: nn.Module, *, compile: bool = True, fuse: bool = True) -> None:
        check_supported(model)
        self.config = model.config
        self.net = FastLlama(model, fuse=fuse).eval()
        self.compiled = compile
        self._forward = (
            torch.compile(self.net.forward, dynamic=False, options=INDUCTOR_OPTIONS) if compile else self.net.forward
        )

    def new_cache(self, batch_size: int, max_len: int) -> StaticCache:
        """An empty cache for `batch_size` rows of up to `max_len` slots (prompt bucket + new tokens)."""
        c = self.config
        shape = (c.num_hidden_layers, batch_size, c.kv_heads, max_len, c.resolved_head_dim)
        dtype = self.net.dtype
        return StaticCache(
            torch.zeros(shape, dtype=dtype),
            torch.zeros(shape, dtype=dtype),
            torch.ones(batch_size, max_len, dtype=torch.bool),
            torch.zeros(batch_size, 1, dtype=torch.long),
        )

    def prefill(
        self, tokens: torch.Tensor, max_new_tokens: int, attention_mask: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, StaticCache, int]:
        """Run the prompt (B, T) left-padded to its bucket: (last logits (B, V), the cache, next free slot)."""
        batch_size, prompt_len = tokens.shape
        bucket = prompt_bucket(prompt_len)
        max_len = -(-(bucket + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
        if bucket + max_new_tokens > self.config.max_position_embeddings:
            raise ValueError(
                f"the compiled decoder needs the prompt bucket ({bucket}) + max_new_tokens ({max_new_tokens}) "
                f"within the context ({self.config.max_position_embeddings}); use a shorter prompt or compile=False"
            )
        cache = self.new_cache(batch_size, max_len)
        real = torch.ones_like(tokens, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        pad = bucket - prompt_len
        ids = F.pad(tokens, (pad, 0), value=0)  # (B, bucket)
        cache.valid[:, :bucket] = F.pad(real, (pad, 0), value=False)
        cache.offset[:, 0] = bucket - cache.valid[:, :bucket].sum(-1)  # pads before the first real token
        logits = self.step(ids, 0, cache)
        return logits, cache, bucket

    def step(self, ids: torch.Tensor, slot: int, cache: StaticCache) -> torch.Tensor:
        """Feed ids (B, T) at slots slot..slot+T-1: last-position logits (B, V) (float32)."""
        slots = torch.arange(slot, slot + ids.shape[1])  # (T,) a tensor: no recompile per position
        forward = self._forward if ids.shape[1] == 1 else self.net.forward  # the prompt runs eagerly
        with torch.inference_mode():
            logits = forward(ids, slots, cache.keys, cache.values, cache.valid, cache.offset)
        return logits.float()

    @torch.inference_mode()
    def generate(self, tokens: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding without EOS: (B, T) prompt -> (B, T + max_new_tokens) (for benchmarks and tests)."""
        out = [tokens]
        logits, cache, slot = self.prefill(tokens, max_new_tokens)
        for _ in range(max_new_tokens):
            nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
            out.append(nxt)
            if len(out) > max_new_tokens:
                break
            logits = self.step(nxt, slot, cache)
            slot += 1
        return torch.cat(out, dim=1)


_DECODERS: weakref.WeakKeyDictionary[nn.Module, FastDecoder] = weakref.WeakKeyDictionary()


def fast_decoder(model: nn.Module) -> FastDecoder:
    """The model's compiled decoder, built once per model (compiled graphs are reused across calls)."""
    decoder = _DECODERS.get(model)
    if decoder is None:
        decoder = _DECODERS[model] = FastDecoder(model)
    return decoder


class FastRun:
    """`stream_generate`'s per-call decoding state on the compiled path (duck-types its `_Decoding`)."""

    def __init__(self, decoder: FastDecoder, buf: torch.Tensor, prompt_len: int, attention_mask: torch.Tensor | None):
        self.decoder, self.buf, self.prompt_len = decoder, buf, prompt_len
        self.attention_mask = attention_mask
        self.cache: StaticCache | None = None
        self.slot = 0

    def forward(self, length: int, start: int, cache: object) -> torch.Tensor:
        """Next-token logits (B, V) after buf[:, :length]: the prefill on the first call, then one token each."""
        if self.cache is None:
            prompt = self.buf[:, : self.prompt_len]
            logits, self.cache, self.slot = self.decoder.prefill(
                prompt, self.buf.shape[1] - self.prompt_len, self.attention_mask
            )
            return logits
        logits = self.decoder.step(self.buf[:, length - 1 : length], self.slot, self.cache)
        self.slot += 1
        return logits


def compiled_decoding(
    model: nn.Module, buf: torch.Tensor, prompt_len: int, attention_mask: torch.Tensor | None, kv_cache: object
) -> FastRun:
    """The compiled path for one `stream_generate(..., compile=True)` call; ValueError where it cannot apply."""
    if kv_cache is not None:
        raise ValueError("compile=True keeps its own static cache; do not pass kv_cache (or use compile=False)")
    if reserved_positions(model) != (0, 0) or model._forward_pre_hooks or model._forward_hooks:
        raise ValueError("compile=True does not support prompt/prefix tuning or forward hooks; use compile=False")
    return FastRun(fast_decoder(model), buf, prompt_len, attention_mask)
