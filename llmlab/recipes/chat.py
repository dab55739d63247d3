"""Multi-turn chat with a causal LM: history, a chat template, a sliding context window, streamed replies.

A chat model only ever continues text. Each turn we render the whole conversation (system prompt, earlier
turns, the new user message) with the model's chat template, ending in the header of an assistant turn
(the "generation prompt"), and let the model write until it emits the template's end-of-turn token
(`<|im_end|>` in ChatML, `<|eot_id|>` in Llama-3) or EOS. Chat templates: Hugging Face's convention,
https://huggingface.co/docs/transformers/chat_templating; ChatML: https://github.com/openai/openai-python/blob/release-v0.28.0/chatml.md.

    session = ChatSession(model, tokenizer, template="chatml", system="You are concise.", max_new_tokens=64)
    session.send("Hi!", on_text=lambda s: print(s, end="", flush=True))
    session.send("What is 2+2?")           # sees the first exchange too
    session.save("chat.json"); session.reset()

Context window: the prompt plus `max_new_tokens` must fit in `context_tokens` (at most the model's
`block_size`). When it would not, the OLDEST turns (a user message and the replies after it) are left out of
the prompt, one turn at a time, until it fits; the system prompt and the current user message are always
kept (the "sliding window" of chat front-ends). The full history is still kept for `save()`.

KV cache reuse: consecutive prompts of a chat share a long prefix (the system prompt and every earlier turn),
so the session keeps its KV cache between turns. Each turn it finds the longest common token prefix of the
cached tokens (last prompt + last reply) and the new prompt, crops the cache to it and prefills only the rest
(what llama.cpp's server does with `cache_prompt`). Positions are absolute, so a common prefix sits at the
same positions in both prompts and its keys/values are exactly what a full prefill would compute; when the
oldest turns are dropped the prompt changes right after the system prompt, and the common prefix (and so
the reuse) shrinks to that. `reuse_cache=False` re-prefills the whole conversation every turn; replies are
the same either way. Prompt-tuned models and models with other forward hooks always re-prefill (prefix tuning
reuses the cache: its hook only shifts positions).

`run_chat` drives a session from lines of text (a terminal or piped stdin): plain lines are user messages,
`/reset`, `/save FILE`, `/help` and `/exit` are commands.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch

from llmlab.generate import (
    TextStreamer,
    make_generator,
    stream_generate,
)
from llmlab.generate.loop import new_kv_cache
from llmlab.generate.stopping import StopStringHoldback
from llmlab.nn.virtual import reserved_positions
from llmlab.tokenizers.chat import TEMPLATES, apply_chat_template

TEMPLATE_CHOICES = ("auto", *TEMPLATES)

# End-of-turn markers of the built-in templates; `zh` puts one turn per line, so its turn ends at "\n".
END_OF_TURN: dict[str, tuple[str, ...]] = {"chatml": ("<|im_end|>",), "llama3": ("<|eot_id|>",), "llama2": ("</s>",)}
TEXT_STOPS: dict[str, tuple[str, ...]] = {"zh": ("\n",)}
# Markers recognised inside a model's own (Jinja) template.
KNOWN_END_MARKERS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "</s>")

HELP = "commands: /reset (clear history)  /save FILE (write the conversation as JSON)  /help  /exit"


def resolve_template(template: str, model_template: str | None) -> tuple[str, str]:
    """Pick the chat template: `(name or Jinja source for apply_chat_template, a short label)`.

    Args:
        template: 'auto' (the model's own template), a built-in name (chatml, llama3, llama2, zh) or the
            path of a `.jinja` file.
        model_template: the checkpoint's own template (None when it has none).

    Raises:
        ValueError: 'auto' for a model without a template, or an unknown name.
    """
    if template == "auto":
        if not model_template:
            raise ValueError(
                "this model has no chat template (e.g. a GPT trained with `llmlab pretrain`); "
                "pass --template chatml or --template zh"
            )
        return model_template, "auto"
    if template in TEMPLATES:
        return template, template
    if Path(template).is_file():
        return Path(template).read_text(encoding="utf-8"), str(template)
    raise ValueError(f"unknown chat template {template!r}; use one of {', '.join(TEMPLATE_CHOICES)} or a .jinja file")


def end_of_turn_markers(template: str) -> tuple[str, ...]:
    """The strings that end an assistant turn for a template name or Jinja source."""
    if template in END_OF_TURN:
        return END_OF_TURN[template]
    if template in TEMPLATES:
        return ()
    return tuple(m for m in KNOWN_END_MARKERS if m in template)


def turn_stops(template: str, tokenizer: Any) -> tuple[list[int], list[str]]:
    """What ends an assistant turn: `(token ids, text stop strings)` for a template and tokenizer.

    Token ids: the template's end-of-turn markers that are single tokens, plus EOS. A marker the tokenizer
    splits into several tokens (e.g. ChatML's `<|im_end|>` with a character tokenizer) becomes a text stop,
    as does the end of line for `zh`.
    """
    markers = end_of_turn_markers(template)
    ids = [tokenizer.token_to_id(m) for m in markers]
    stop_ids = sorted({int(i) for i in ids if i is not None})
    if tokenizer.eos_id is not None and int(tokenizer.eos_id) not in stop_ids:
        stop_ids.append(int(tokenizer.eos_id))
    stop_strings = [m for m, i in zip(markers, ids, strict=True) if i is None]
    return stop_ids, stop_strings + list(TEXT_STOPS.get(template, ()))


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token sequences."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


@dataclass
class ChatSession:
    """One conversation with a model: the history, how to render it, and how to sample replies.

    Args:
        model: an llmlab causal LM (`GPT`, `Llama`) with `.config.block_size`.
        tokenizer: llmlab `Tokenizer` (`encode`, `decode`, `token_to_id`, `eos_id`).
        template: a built-in template name (chatml, llama3, llama2, zh) or Jinja source.
        system: the system prompt (None: none; a model's own template may add its default one).
        max_new_tokens: the longest reply, in tokens.
        temperature: 0 = greedy decoding.
        top_k: keep the k most likely tokens (None: all).
        top_p: nucleus sampling mass (None: off).
        min_p: drop tokens less likely than `min_p` x the top token (None: off).
        repetition_penalty: CTRL penalty on every token of the prompt and reply so far (None or 1.0: off).
        frequency_penalty: OpenAI per-occurrence penalty on the reply's tokens (0: off).
        presence_penalty: OpenAI once-per-token penalty on the reply's tokens (0: off).
        seed: seeds the session's random generator once, so a whole conversation is reproducible.
        context_tokens: prompt + reply budget (None: the model's block_size; larger is an error).
        reuse_cache: keep the KV cache between turns and prefill only the part of the prompt that is new
            (False: re-prefill the whole conversation every turn; the replies are the same).
    """

    model: Any
    tokenizer: Any
    template: str = "chatml"
    system: str | None = None
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_k: int | None = 50
    top_p: float | None = 0.9
    min_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int | None = None
    context_tokens: int | None = None
    reuse_cache: bool = True
    history: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        block_size = int(self.model.config.block_size) - reserved_positions(self.model)[0]  # prompt/prefix tuning
        if self.context_tokens is None:
            self.context_tokens = block_size
        if self.context_tokens > block_size:
            raise ValueError(
                f"--context-tokens {self.context_tokens} is larger than the model's context of {block_size}; "
                f"use at most {block_size}"
            )
        if self.max_new_tokens < 1 or self.max_new_tokens >= self.context_tokens:
            raise ValueError(
                f"max_new_tokens must be between 1 and context_tokens - 1 = {self.context_tokens - 1} "
                f"(got {self.max_new_tokens}); lower --max-new-tokens or raise --context-tokens"
            )
        self.stop_token_ids, self.stop_strings = turn_stops(self.template, self.tokenizer)
        self.device = next(self.model.parameters()).device
        self.generator = make_generator(self.seed, self.device)
        self.dropped_turns = 0  # turns left out of the last prompt to fit the context
        self.last_prompt_ids: list[int] = []  # what the model saw in the last turn (for inspection)
        self.last_generated = 0  # tokens the model produced in the last turn, end-of-turn token included
        self.last_reply_ids: list[int] = []  # those tokens
        self.last_prefill_tokens = 0  # prompt tokens run through the model in the last turn
        self.last_reused_tokens = 0  # prompt tokens whose keys/values came from the cache instead
        self.last_ttft_s: float | None = None  # seconds from send() to the first generated token
        self._cache = None  # KVCache kept between turns (reuse_cache), grown on demand up to context_tokens
        self._cached_ids: list[int] = []  # the tokens whose keys/values `_cache` holds, in order

    # ------------------------------------------------------------------ prompt
    @property
    def prompt_budget(self) -> int:
        """Tokens the rendered prompt may use: the context minus room for the reply."""
        return int(self.context_tokens) - self.max_new_tokens

    def messages(self, history: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
        """The system message (if any) followed by `history` (default: the whole history)."""
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + list(self.history if history is None else history)

    def render(self, history: list[dict[str, str]]) -> list[int]:
        """Token ids of the prompt for `history` (+ system prompt), ending with the assistant header."""
        text = apply_chat_template(self.messages(history), self.template, add_generation_prompt=True)
        return self.tokenizer.encode(text)

    def build_prompt(self, user_text: str) -> list[int]:
        """Prompt ids for a new user message, leaving out the oldest turns until it fits the budget.

        Raises:
            ValueError: the system prompt and the user message alone do not fit.
        """
        turns = self.history + [{"role": "user", "content": user_text}]
        starts = [i for i, m in enumerate(turns) if m["role"] == "user"]  # a turn starts at a user message
        for dropped, start in enumerate(starts):
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
        streamer = TextStreamer(self.tokenizer, prompt_ids=prompt_ids)
        holdback = StopStringHoldback(self.stop_strings)
        pieces: list[str] = []

        def emit(delta: str) -> None:
            if not pieces:
                delta = delta.lstrip()  # nothing shown yet: skip the whitespace a reply may start with
            if delta:
                pieces.append(delta)
                if on_text is not None:
                    on_text(delta)

        cache = self._reusable_cache(prompt_ids) if self.reuses_cache else None
        if cache is None:
            self.last_prefill_tokens, self.last_reused_tokens = len(prompt_ids), 0
        steps = (
            int(token[0])
            for token in stream_generate(
                self.model,
                torch.tensor([prompt_ids], dtype=torch.long, device=self.device),  # (1, T)
                self.max_new_tokens,
                temperature=self.temperature,
                top_k=self.top_k,
                top_p=self.top_p,
                min_p=self.min_p,
                repetition_penalty=self.repetition_penalty,
                frequency_penalty=self.frequency_penalty,
                presence_penalty=self.presence_penalty,
                eos_token_id=self.stop_token_ids or None,
                generator=self.generator,
                kv_cache=cache,  # None: a fresh cache, the whole prompt prefilled
            )
        )
        for token_id in steps:
            if self.last_generated == 0:
                self.last_ttft_s = time.perf_counter() - start
            self.last_generated += 1
            self.last_reply_ids.append(token_id)
            if token_id in self.stop_token_ids:
                break
            emit(holdback.put(streamer.put(token_id)))
            if holdback.stopped:
                break
        steps.close()  # the generator stops here: the cache holds the tokens fed so far
        if cache is not None:
            self._cached_ids = (prompt_ids + self.last_reply_ids)[: cache.seq_len]
        emit(holdback.put(streamer.end()))
        emit(holdback.end())
        reply = "".join(pieces).rstrip()
        self.history += [{"role": "user", "content": user_text}, {"role": "assistant", "content": reply}]
        return reply

    # ------------------------------------------------------------------ KV cache reuse
    @property
    def reuses_cache(self) -> bool:
        """Whether turns reuse the KV cache: `reuse_cache` is on and no forward hook can change what is cached.

        Prefix tuning's hook only shifts positions by P (`llmlab.peft.prefix`), consistently across calls, so it
        is allowed; prompt tuning (the soft prompt is prefilled into the cache) and unknown hooks re-prefill.
        """
        hooks = set(self.model._forward_pre_hooks) | set(self.model._forward_hooks)
        prefix_hook = getattr(self.model, "_prefix_position_hook", None)
        if prefix_hook is not None:
            hooks.discard(prefix_hook.id)
        return self.reuse_cache and not hooks

    def _cache_for(self, needed: int):  # noqa: ANN202 - a KVCache
        """The session's KV cache with room for `needed` tokens, keeping what it holds (grown by doubling)."""
        cache = self._cache
        if cache is not None and cache.seq_len != len(self._cached_ids):  # e.g. Ctrl-C inside a forward
            cache, self._cached_ids = None, []
        if cache is None or cache.max_len < needed:
            capacity = min(int(self.context_tokens), max(needed, 2 * cache.max_len if cache is not None else 0))
            grown = new_kv_cache(self.model, 1, capacity, self.device)
            if cache is not None:
                n = cache.seq_len
                grown.k[:, :, :, :n] = cache.k[:, :, :, :n]  # (L, 1, nkv, n, hs)
                grown.v[:, :, :, :n] = cache.v[:, :, :, :n]
                grown.seq_len = n
            self._cache = cache = grown
        return cache

    def _reusable_cache(self, prompt_ids: list[int]):  # noqa: ANN202 - a KVCache
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
        record = {
            "template": self.template if self.template in TEMPLATES else "custom",
            "settings": {
                "max_new_tokens": self.max_new_tokens,
                "temperature": self.temperature,
                "top_k": self.top_k,
                "top_p": self.top_p,
                "seed": self.seed,
                "context_tokens": self.context_tokens,
            },
            "messages": self.messages(),
        }
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(record, f, ensure_ascii=False, indent=2)
                f.write("\n")
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path


def run_chat(
    session: ChatSession,
    lines: Iterable[str],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    interactive: bool = False,
) -> int:
    """Chat over `lines`: each non-empty line is a user message (or a command); replies are streamed to `out`.

    Every reply is followed by a newline, so piped input gives one reply per input line. Command feedback
    and notes (dropped turns) go to `err` in interactive mode only; errors always do. In interactive mode
    Ctrl-C stops the current reply (which is then not kept) and the chat goes on.

    Returns:
        The number of replies generated.
    """
    replies = 0

    def note(msg: str) -> None:
        if interactive:
            print(msg, file=err, flush=True)

    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        if line.startswith("/"):
            command, _, arg = line.partition(" ")
            arg = arg.strip()
            if command in ("/exit", "/quit"):
                break
            if command == "/reset":
                session.reset()
                note("(history cleared)")
            elif command == "/save":
                if not arg:
                    print("llmlab: error: /save needs a file name, e.g. /save chat.json", file=err, flush=True)
                    continue
                try:
                    note(f"(saved {len(session.history)} messages to {session.save(arg)})")
                except OSError as e:
                    print(f"llmlab: error: cannot save to {arg}: {e.strerror or e}", file=err, flush=True)
            elif command == "/help":
                note(HELP)
            else:
                print(f"llmlab: error: unknown command {command}; {HELP}", file=err, flush=True)
            continue
        try:
            session.send(line, on_text=lambda s: (out.write(s), out.flush()))
        except ValueError as e:  # a message too long for the context: say so and keep chatting
            print(f"llmlab: error: {e}", file=err, flush=True)
            continue
        except KeyboardInterrupt:
            if not interactive:
                raise
            print("\n(reply interrupted; it is not kept in the history)", file=err, flush=True)
            continue
        out.write("\n")
        out.flush()
        replies += 1
        if session.dropped_turns:
            note(f"(context full: the {session.dropped_turns} oldest turn(s) were left out of the prompt)")
    return replies
