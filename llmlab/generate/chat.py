"""Multi-turn chat with a causal LM: history, a chat template, a sliding context window, streamed replies.

A chat model only ever continues text. Each turn we render the whole conversation (system prompt, earlier
turns, the new user message) with the model's chat template, ending in the header of an assistant turn
(the "generation prompt"), and let the model write until it emits the template's end-of-turn token
(`<|im_end|>` in ChatML, `<|eot_id|>` in Llama-3) or EOS (`llmlab.tokenizers.chat.turn_stops`). Chat
templates: Hugging Face's convention, https://huggingface.co/docs/transformers/chat_templating; ChatML:
https://github.com/openai/openai-python/blob/release-v0.28.0/chatml.md.

    session = ChatSession(model, tokenizer, template="chatml", system="You are concise.",
                          sampling=SamplingConfig(max_new_tokens=64, temperature=0.7))
    session.send("Hi!", on_text=lambda s: print(s, end="", flush=True))
    session.send("What is 2+2?")           # sees the first exchange too
    session.save("chat.json"); session.reset()

Context window: the prompt plus `max_new_tokens` must fit in `context_tokens` (at most the model's context).
When it would not, the OLDEST turns (a user message and the replies after it) are left out of the prompt,
one turn at a time, until it fits; the system prompt and the current user message are always kept (the
"sliding window" of chat front-ends). The full history is still kept for `save()`.

KV cache reuse: consecutive prompts of a chat share a long prefix (the system prompt and every earlier turn),
so the session keeps its KV cache between turns. Each turn it finds the longest common token prefix of the
cached tokens (last prompt + last reply) and the new prompt, crops the cache to it and prefills only the rest
(what llama.cpp's server does with `cache_prompt`). Positions are absolute, so a common prefix sits at the
same positions in both prompts and its keys/values are exactly what a full prefill would compute; when the
oldest turns are dropped the prompt changes right after the system prompt, and the common prefix (and so
the reuse) shrinks to that. `reuse_cache=False` re-prefills the whole conversation every turn; replies are
the same either way. Prompt-tuned models and models with other forward hooks always re-prefill (prefix tuning
reuses the cache: its hook only shifts positions; see `llmlab.generate.loop.cache_prefix_reusable`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from llmlab.config.sampling import CHAT_SAMPLING, SamplingConfig, resolve_sampling
from llmlab.generate.loop import cache_prefix_reusable, context_window, new_kv_cache, stream_generate
from llmlab.generate.samplers import make_generator
from llmlab.generate.text import text_deltas
from llmlab.io import atomic_write_json
from llmlab.nn.kv_cache import KVCache
from llmlab.tokenizers.chat import TEMPLATES, chat_messages, render_prompt, turn_starts, turn_stops


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class ChatSession:
    """One conversation with a model: the history, how to render it, and how to sample replies.

    Args:
        model: an llmlab causal LM (`GPT`, `Llama`) with `.config.block_size`.
        tokenizer: llmlab `Tokenizer` (`encode`, `decode`, `token_to_id`, `eos_id`).
        template: a built-in template name (chatml, llama3, llama2, zh) or Jinja source.
        system: the system prompt (None: none; a model's own template may add its default one).
        sampling: how replies are decoded (default `CHAT_SAMPLING`); `max_new_tokens` is the longest reply
            and `seed` seeds the session's generator once, so a whole conversation is reproducible.
        context_tokens: prompt + reply budget (None: the model's context; larger is an error).
        reuse_cache: keep the KV cache between turns and prefill only the part of the prompt that is new
            (False: re-prefill the whole conversation every turn; the replies are the same).
        **options: `SamplingConfig` fields overriding those of `sampling` (e.g. `temperature=0`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        template: str = "chatml",
        system: str | None = None,
        sampling: SamplingConfig | None = None,
        context_tokens: int | None = None,
        reuse_cache: bool = True,
        **options: Any,
    ) -> None:
        self.model, self.tokenizer, self.template, self.system = model, tokenizer, template, system
        self.sampling = resolve_sampling(sampling if sampling is not None else CHAT_SAMPLING, options)
        self.reuse_cache = reuse_cache
        self.history: list[dict[str, str]] = []
        self.context_tokens = _context_budget(model, context_tokens, self.max_new_tokens)
        self.stop_token_ids, self.stop_strings = turn_stops(template, tokenizer)
        self.device = next(model.parameters()).device
        self.generator = make_generator(self.sampling.seed, self.device)
        self.dropped_turns = 0  # turns left out of the last prompt to fit the context
        self.last_prompt_ids: list[int] = []  # what the model saw in the last turn (for inspection)
        self.last_generated = 0  # tokens the model produced in the last turn, end-of-turn token included
        self.last_reply_ids: list[int] = []  # those tokens
        self.last_prefill_tokens = 0  # prompt tokens run through the model in the last turn
        self.last_reused_tokens = 0  # prompt tokens whose keys/values came from the cache instead
        self.last_ttft_s: float | None = None  # seconds from send() to the first generated token
        self._cache: KVCache | None = None  # kept between turns (reuse_cache), grown on demand to context_tokens
        self._cached_ids: list[int] = []  # the tokens whose keys/values `_cache` holds, in order

    @property
    def max_new_tokens(self) -> int:
        """The longest reply, in tokens."""
        return self.sampling.max_new_tokens

    # ------------------------------------------------------------------ prompt
    @property
    def prompt_budget(self) -> int:
        """Tokens the rendered prompt may use: the context minus room for the reply."""
        return self.context_tokens - self.max_new_tokens

    def messages(self, history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        """The system message (if any) followed by `history` (default: the whole history)."""
        return chat_messages(self.system, self.history if history is None else history)

    def render(self, history: list[dict[str, str]]) -> list[int]:
        """Token ids of the prompt for `history` (+ system prompt), ending with the assistant header."""
        return render_prompt(self.tokenizer, self.template, self.system, history)

    def build_prompt(self, user_text: str) -> list[int]:
        """Prompt ids for a new user message, leaving out the oldest turns until it fits the budget.

        Raises:
            ValueError: the system prompt and the user message alone do not fit.
        """
        turns = self.history + [{"role": "user", "content": user_text}]
        for dropped, start in enumerate(turn_starts(turns)):
            ids = self.render(turns[start:])
            if len(ids) <= self.prompt_budget:
                self.dropped_turns = dropped
                return ids
        raise ValueError(
            f"the system prompt and this message take {len(ids)} tokens, more than the {self.prompt_budget} the "
            f"context allows ({self.context_tokens} context - {self.max_new_tokens} new tokens); "
            "shorten the message or raise --context-tokens"
        )

    # ------------------------------------------------------------------ turns
    @torch.inference_mode()
    def send(self, user_text: str, on_text: Callable[[str], None] | None = None) -> str:
        """Add a user message, generate the assistant's reply (streamed to `on_text`), and return it.

        The reply stops at the template's end-of-turn token, EOS, a text stop (`zh`: end of line), or after
        `max_new_tokens`. Leading/trailing whitespace is not part of the reply.
        """
        start = time.perf_counter()
        prompt_ids = self.build_prompt(user_text)
        self.last_prompt_ids, self.last_generated, self.last_ttft_s = prompt_ids, 0, None
        self.last_reply_ids = []
        cache = self._reusable_cache(prompt_ids) if self.reuses_cache else None
        if cache is None:
            self.last_prefill_tokens, self.last_reused_tokens = len(prompt_ids), 0
        steps = stream_generate(
            self.model,
            torch.tensor([prompt_ids], dtype=torch.long, device=self.device),  # (1, T)
            sampling=self.sampling.replace(stop=()),  # text stops are cut by `text_deltas`
            eos_token_id=self.stop_token_ids or None,
            generator=self.generator,
            kv_cache=cache,  # None: a fresh cache, the whole prompt prefilled
        )
        pieces: list[str] = []
        for delta in text_deltas(self._record(steps, start), self.tokenizer, prompt_ids, self.stop_strings):
            if not pieces:
                delta = delta.lstrip()  # nothing shown yet: skip the whitespace a reply may start with
            if delta:
                pieces.append(delta)
                if on_text is not None:
                    on_text(delta)
        steps.close()  # the generator stops here: the cache holds the tokens fed so far
        if cache is not None:
            self._cached_ids = (prompt_ids + self.last_reply_ids)[: cache.seq_len]
        reply = "".join(pieces).rstrip()
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
        return reply

    def _record(self, steps: Iterator[torch.Tensor], start: float) -> Iterator[int]:
        """The generated token ids, recorded in `last_reply_ids` (end-of-turn token included); ends at one."""
        for step in steps:
            token_id = int(step[0])
            if self.last_generated == 0:
                self.last_ttft_s = time.perf_counter() - start
            self.last_generated += 1
            self.last_reply_ids.append(token_id)
            if token_id in self.stop_token_ids:
                return
            yield token_id

    # ------------------------------------------------------------------ KV cache reuse
    @property
    def reuses_cache(self) -> bool:
        """Whether turns reuse the KV cache: `reuse_cache` is on and no forward hook can change what is cached."""
        return self.reuse_cache and cache_prefix_reusable(self.model)

    def _cache_for(self, needed: int) -> KVCache:
        """The session's KV cache with room for `needed` tokens, keeping what it holds (grown by doubling)."""
        cache = self._cache
        if cache is not None and cache.seq_len != len(self._cached_ids):  # e.g. Ctrl-C inside a forward
            cache, self._cached_ids = None, []
        if cache is None or cache.max_len < needed:
            capacity = min(self.context_tokens, max(needed, 2 * cache.max_len if cache is not None else 0))
            grown = new_kv_cache(self.model, 1, capacity, self.device)
            if cache is not None:
                grown.copy_from(cache)
            self._cache = cache = grown
        return cache

    def _reusable_cache(self, prompt_ids: list[int]) -> KVCache:
        """The session's cache, cropped to its longest common token prefix with `prompt_ids` (at least the last
        prompt token is left out: its logits give the first reply token), with room for the reply."""
        cache = self._cache_for(len(prompt_ids) + self.max_new_tokens)
        keep = min(common_prefix_len(self._cached_ids, prompt_ids), len(prompt_ids) - 1)
        cache.crop(keep)
        del self._cached_ids[keep:]
        self.last_reused_tokens, self.last_prefill_tokens = keep, len(prompt_ids) - keep
        return cache

    def reset(self) -> None:
        """Forget the conversation (the system prompt stays) and the KV cache."""
        self.history.clear()
        self.dropped_turns = 0
        self._cached_ids = []
        if self._cache is not None:
            self._cache.reset()

    def save(self, path: str | os.PathLike) -> Path:
        """Write the whole conversation (system prompt included) as JSON, atomically; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        s = self.sampling
        record = {
            "template": self.template if self.template in TEMPLATES else "custom",
            "settings": {
                "max_new_tokens": s.max_new_tokens,
                "temperature": s.temperature,
                "top_k": s.top_k,
                "top_p": s.top_p,
                "seed": s.seed,
                "context_tokens": self.context_tokens,
            },
            "messages": self.messages(),
        }
        atomic_write_json(path, record)
        return path


def _context_budget(model: Any, context_tokens: int | None, max_new_tokens: int) -> int:
    """The prompt + reply budget: `context_tokens` (default: all the model's context), checked against it."""
    context = context_window(model)[0]  # prompt/prefix tuning take P positions
    budget = context if context_tokens is None else int(context_tokens)
    if budget > context:
        raise ValueError(
            f"--context-tokens {budget} is larger than the model's context of {context}; use at most {context}"
        )
    if max_new_tokens < 1 or max_new_tokens >= budget:
        raise ValueError(
            f"max_new_tokens must be between 1 and context_tokens - 1 = {budget - 1} "
            f"(got {max_new_tokens}); lower --max-new-tokens or raise --context-tokens"
        )
    return budget
