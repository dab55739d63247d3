"""A continuous-batching decode engine: requests join and leave a running batch at every step.

    engine = Engine(model, tokenizer, max_batch=8)
    rid = engine.submit(prompt_ids, SamplingConfig(max_new_tokens=64, temperature=0), eos_ids=[2])
    while engine.has_work:
        for event in engine.step():          # TokenEvent(request_id, token_id, finish_reason)
            ...                              # stream event.token_id to its request's client

One `step()`:
    1. admit waiting requests into free slots, first come first served: prefill each prompt alone (a one-row
       forward into its own cache), sample its first token, and copy its keys/values into the slot
       (`SlotCache.place`);
    2. run ONE forward over the slots up to the last running one (admission fills the lowest free slot),
       each feeding its newest token at the shared head (per-slot attention mask and position ids; a free
       slot among them feeds a masked filler);
    3. sample every live request's next token with its own processors and generator, and retire finished
       requests ("stop": an EOS/stop id or a stop string; "length": max_new_tokens, or the sequence filled
       `max_len`), freeing their slots for step 1 of the next call.

This is the iteration-level scheduling of Orca (Yu et al., OSDI 2022,
https://www.usenix.org/conference/osdi22/presentation/yu) on the cache layout of `llmlab.serve.slots`.

Exactness: a request decodes what `llmlab.generate.generate` decodes for its prompt alone, up to the float
rounding of the batched masked forward (the same guarantee as `generate_batch`): its prefill is the same
one-row forward, its processors (penalties, temperature, top-k/top-p/min-p) and sampler are built as
`generate` builds them, and a seeded request draws from its own `torch.Generator` exactly once per token, so
its sample does not depend on the other requests in the batch (an unseeded one draws from torch's global
RNG, shared with every other request, so it is not reproducible). A request ends with "length" once feeding
its newest token would pass `max_len` cached tokens, where `generate` would go on (cropping the context).

Not here yet: batched prefill (one forward per admitted prompt), prefix (system prompt) reuse across
requests, one vectorised sampling call for all greedy rows. The thread-safe/async front is `llmlab.serve.runner`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from llmlab.config.sampling import SamplingConfig
from llmlab.generate import (
    GreedySampler,
    LogitsProcessor,
    MultinomialSampler,
    Sampler,
    StoppingCriteria,
    StopStrings,
    build_penalties,
    build_processors,
    make_generator,
)
from llmlab.generate.streamer import Decoder
from llmlab.models.base import DecoderLM
from llmlab.nn.virtual import reserved_positions
from llmlab.serve.slots import SlotCache


class TokenEvent(NamedTuple):
    """One generated token of one request; `finish_reason` is "stop" or "length" on its last token, else None.

    `logprob` / `top_logprobs` (only when the request asked for logprobs): the log-softmax of the model's raw
    logits (before penalties, temperature, filtering and structured-output masks, as OpenAI reports them) at
    the chosen token, and the `logprobs` most likely (token id, logprob) pairs, most likely first.
    """

    request_id: int
    token_id: int
    finish_reason: str | None
    logprob: float | None = None
    top_logprobs: list[tuple[int, float]] | None = None


@dataclass
class _Request:
    """A submitted request: its prompt + generated tokens, how it samples and when it stops."""

    request_id: int
    prompt_len: int
    max_new_tokens: int
    tokens: torch.Tensor  # (1, prompt_len + room) prompt, then the generated tokens
    eos_ids: frozenset[int]
    processors: LogitsProcessor
    sampler: Sampler
    criteria: list[StoppingCriteria] = field(default_factory=list)
    length: int = 0  # tokens in `tokens` so far
    slot: int | None = None
    extra: tuple[LogitsProcessor, ...] = ()  # per-request processors (structured output), before `processors`
    logprobs: int | None = None  # report logprobs with this many alternatives (None: none)

    @property
    def newest(self) -> int:
        return int(self.tokens[0, self.length - 1])


def check_engine_model(model: Any) -> None:
    """Raise a one-line ValueError unless the engine decodes `model` exactly (see `llmlab.serve.slots`)."""
    if not isinstance(model, DecoderLM):
        raise ValueError(
            f"the engine serves llmlab decoders (GPT, Llama), not {type(model).__name__}; load it with llmlab"
        )
    config = model.config
    if reserved_positions(model) != (0, 0):
        raise ValueError(
            "the engine cannot serve prompt or prefix tuning (virtual tokens need their own positions and cache "
            "entries); serve the base model or a LoRA adapter"
        )
    if not getattr(config, "causal", True) or getattr(config, "attention", "") == "linear":
        raise ValueError("the engine needs causal softmax attention; this model is non-causal or uses linear attention")
    if getattr(config, "cross_attention", False):
        raise ValueError("the engine serves decoder-only models; this one cross-attends to encoder_hidden_states")
    if getattr(config, "n_global_tokens", 0):
        raise ValueError("the engine cannot serve local attention with global tokens (they sit at fixed columns)")


def _logprobs(logits: torch.Tensor, token: int, top: int | None) -> tuple[float | None, list[tuple[int, float]] | None]:
    """(logprob of `token`, the `top` most likely (id, logprob)) from raw logits (1, V); (None, None) if top is None."""
    if top is None:
        return None, None
    logprobs = torch.log_softmax(logits[0].float(), dim=-1)  # (V,)
    values, ids = torch.topk(logprobs, top) if top else (logprobs[:0], logprobs[:0].long())
    return float(logprobs[token]), [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]


class Engine:
    """Continuous batching over a fixed number of KV-cache slots (see the module docstring).

    Args:
        model: an llmlab decoder (`GPT`, `Llama`, with or without merged/injected LoRA).
        tokenizer: decodes tokens for stop strings (`SamplingConfig.stop`); None if no request uses them.
        max_batch: slots = sequences decoded together (>= 1).
        max_len: cache columns, the longest sequence (prompt + reply) served (default and limit: the
            model's context window).
    """

    def __init__(
        self, model: DecoderLM, tokenizer: Decoder | None = None, max_batch: int = 8, max_len: int | None = None
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1 (got {max_batch})")
        context = model.config.block_size if isinstance(model, DecoderLM) else 2
        max_len = context if max_len is None else max_len
        check_engine_model(model)
        if not 2 <= max_len <= context:
            raise ValueError(f"max_len must be in 2..{context} (the model's context window); got {max_len}")
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_len = max_len
        self.device = next(model.parameters()).device  # (a quantized LM head has buffers, no weight)
        self.cache = SlotCache(model, max_batch, max_len)
        self._slots: list[_Request | None] = [None] * max_batch
        self._waiting: deque[_Request] = deque()
        self._next_id = 0
        self.failed: list[tuple[int, Exception]] = []  # (request id, error) of requests whose processors raised

    # ------------------------------------------------------------------ requests
    def submit(
        self,
        prompt_ids: Sequence[int] | torch.Tensor,
        sampling: SamplingConfig | None = None,
        eos_ids: Sequence[int] = (),
        processors: Sequence[LogitsProcessor] = (),
        logprobs: int | None = None,
    ) -> int:
        """Queue a request; it joins the batch at the next `step()` with a free slot. Returns its id.

        Args:
            prompt_ids: the prompt's token ids (1 <= length <= max_len).
            sampling: temperature, top-k/p, min-p, penalties, stop strings, seed, max_new_tokens (>= 1).
            eos_ids: ids that end the reply (EOS, end-of-turn, stop tokens); the id is emitted as the last token.
            processors: extra per-request logits processors `(input_ids (1, T), logits (1, V)) -> logits`, called
                once per generated token, in order, with the prompt and the tokens generated so far. They run
                BEFORE the sampling ones (penalties, temperature, top-k/p, min-p), so a mask (structured output)
                is never undone and top-k picks among the allowed tokens only.
            logprobs: None, or 0..20: every TokenEvent carries the chosen token's logprob and this many top ones.
        """
        config = (sampling or SamplingConfig()).validate()
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long).flatten().cpu()
        vocab = self.model.lm_head.out_features
        if not 1 <= prompt.numel() <= self.max_len:
            raise ValueError(f"the prompt has {prompt.numel()} tokens; the engine takes 1..{self.max_len} (max_len)")
        if int(prompt.min()) < 0 or int(prompt.max()) >= vocab:
            raise ValueError(f"prompt token ids must be in 0..{vocab - 1} (the model's vocabulary)")
        if config.max_new_tokens < 1 or config.num_beams != 1:
            raise ValueError(
                "the engine samples >= 1 new token without beam search: set max_new_tokens >= 1, num_beams=1"
            )
        if logprobs is not None and not 0 <= logprobs <= 20:
            raise ValueError(f"logprobs must be in 0..20 (got {logprobs})")
        if config.stop and self.tokenizer is None:
            raise ValueError("stop strings are matched on decoded text: create the Engine with a tokenizer")
        request = self._new_request(prompt, config, eos_ids)
        request.extra, request.logprobs = tuple(processors), logprobs
        self._waiting.append(request)
        return request.request_id

    def _new_request(self, prompt: torch.Tensor, config: SamplingConfig, eos_ids: Sequence[int]) -> _Request:
        """Build a request's buffer, processors and sampler as `llmlab.generate.stream_generate` builds them."""
        n = prompt.numel()
        room = min(config.max_new_tokens, self.max_len + 1 - n)  # at most max_len tokens are ever fed
        tokens = torch.empty(1, n + room, dtype=torch.long, device=self.device)
        tokens[0, :n] = prompt
        penalties = build_penalties(config.repetition_penalty, config.frequency_penalty, config.presence_penalty, n)
        processors = build_processors(
            config.temperature, config.top_k or None, config.top_p, extra=penalties, min_p=config.min_p
        )
        sampler: Sampler = GreedySampler()
        if config.temperature != 0:
            sampler = MultinomialSampler(make_generator(config.seed, self.device))
        criteria: list[StoppingCriteria] = [StopStrings(self.tokenizer, list(config.stop))] if config.stop else []
        request = _Request(
            self._next_id, n, config.max_new_tokens, tokens, frozenset(eos_ids), processors, sampler, criteria, n
        )
        self._next_id += 1
        return request

    def cancel(self, request_id: int) -> bool:
        """Drop a waiting or running request at once (no event says so; its slot is free for the next step).

        Returns False when `request_id` is unknown or already finished.
        """
        for request in self._waiting:
            if request.request_id == request_id:
                self._waiting.remove(request)
                return True
        for request in self._slots:
            if request is not None and request.request_id == request_id:
                self._retire(request)
                return True
        return False

    def slot_of(self, request_id: int) -> int | None:
        """The slot (cache row) a running request decodes in; None while it waits or once it is done."""
        return next((r.slot for r in self._slots if r is not None and r.request_id == request_id), None)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def num_running(self) -> int:
        return sum(r is not None for r in self._slots)

    @property
    def has_work(self) -> bool:
        return bool(self._waiting) or self.num_running > 0

    # ------------------------------------------------------------------ decoding
    def step(self) -> list[TokenEvent]:
        """Admit waiting requests, decode one token for every running one; return this step's tokens in order."""
        events: list[TokenEvent] = []
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                self._admit(events)
                if self.num_running:
                    self._decode(events)
        finally:
            self.model.train(was_training)
        return events

    def run_until_done(self) -> dict[int, list[int]]:
        """Step until no request waits or runs; the generated tokens of every request that finished meanwhile."""
        outputs: dict[int, list[int]] = {}
        while self.has_work:
            for event in self.step():
                outputs.setdefault(event.request_id, []).append(event.token_id)
        return outputs

    def _admit(self, events: list[TokenEvent]) -> None:
        """Prefill waiting requests into free slots (each alone, as `generate` does) and emit their first tokens."""
        while self._waiting and None in self._slots:
            request = self._waiting.popleft()
            prefill = self.model.make_kv_cache(1, request.prompt_len)
            ids = request.tokens[:, : request.prompt_len]  # (1, T)
            logits = self.model(ids, kv_cache=prefill, logits_to_keep=1).logits[:, -1]  # (1, V)
            event = self._sample_or_fail(request, logits)
            if event is None:
                continue
            events.append(event)
            if event.finish_reason is None:
                request.slot = self._slots.index(None)
                self._slots[request.slot] = request
                self.cache.place(request.slot, prefill)

    def _decode(self, events: list[TokenEvent]) -> None:
        """One forward over the slots up to the last running one (each feeds its newest token at the head), then
        sample each running request."""
        self.cache.trim()  # a long-lived engine does not attend over the columns of finished requests
        self.cache.make_room(1)
        running = [(slot, r) for slot, r in enumerate(self._slots) if r is not None]
        n_rows = running[-1][0] + 1  # slots after the last running one sit this forward out
        ids = torch.zeros(n_rows, 1, dtype=torch.long, device=self.device)  # free slots: a masked filler
        for slot, request in running:
            ids[slot, 0] = request.newest
        mask, positions = self.cache.decode_inputs(n_rows, self.device)  # (R, head + 1), (R, 1)
        rows = self.cache.rows(n_rows)
        logits = self.model(ids, attention_mask=mask, position_ids=positions, kv_cache=rows, logits_to_keep=1).logits
        self.cache.advance([slot for slot, _ in running])
        for slot, request in running:
            event = self._sample_or_fail(request, logits[slot, -1][None])  # (1, V)
            if event is None:
                self._retire(request)
                continue
            events.append(event)
            if event.finish_reason is not None:
                self._retire(request)

    def _sample_or_fail(self, request: _Request, logits: torch.Tensor) -> TokenEvent | None:
        """`_sample`, but a request whose own processors raise is dropped and listed in `self.failed` (the
        caller collects it after `step()`) instead of failing every request of the batch."""
        try:
            return self._sample(request, logits)
        except Exception as error:  # noqa: BLE001 - reported through `failed`
            self.failed.append((request.request_id, error))
            return None

    def _sample(self, request: _Request, logits: torch.Tensor) -> TokenEvent:
        """Choose `request`'s next token from its logits (1, V) and say whether the request is finished."""
        n = request.length
        so_far = request.tokens[:, :n]  # (1, n)
        scores = logits.float()
        for processor in request.extra:
            scores = processor(so_far, scores)
        scores = request.processors(so_far, scores)
        token = int(request.sampler(scores)[0])
        request.tokens[0, n] = token
        request.length = n + 1
        chosen, top = _logprobs(logits, token, request.logprobs)
        return TokenEvent(request.request_id, token, self._finish_reason(request), chosen, top)

    def _finish_reason(self, request: _Request) -> str | None:
        """Why `request` ends after its newest token: "stop" (an EOS/stop id or a stop string), "length"
        (max_new_tokens reached, or feeding the token would pass max_len), or None (it goes on)."""
        so_far = request.tokens[:, : request.length]  # (1, n)
        if int(so_far[0, -1]) in request.eos_ids or any(
            bool(c(so_far, request.prompt_len)[0]) for c in request.criteria
        ):
            return "stop"
        if request.length - request.prompt_len >= request.max_new_tokens or request.length > self.max_len:
            return "length"
        return None

    def _retire(self, request: _Request) -> None:
        """Free a running request's slot."""
        if request.slot is not None:
            self.cache.release(request.slot)
            self._slots[request.slot] = None
            request.slot = None
