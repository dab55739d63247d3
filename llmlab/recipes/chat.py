"""`llmlab chat`: the terminal REPL around `llmlab.generate.chat.ChatSession`.

`run_chat` drives a session from lines of text (a terminal or piped stdin): plain lines are user messages,
`/reset`, `/save FILE`, `/help` and `/exit` are commands. `chat` validates every option (sampling, device,
dtype, template name) before the model loads, then runs the REPL.

`--session NAME` keeps the conversation in the SQLite store `llmlab serve` uses (`--db`, default
conversations.sqlite; `llmlab.serve.memory`): a later `llmlab chat --session NAME` continues it, every message is
stored as it is exchanged, and when the conversation outgrows the context its oldest turns are summarised by the
model (`StoredChat`; the summary is stored and shown on stderr) instead of being left out. `/reset` then also
clears the stored messages.

Piped input: every line is one message and each reply is printed on its own line. A line that is not UTF-8
or a message that fails (e.g. too long for the context) prints one `llmlab: error: ...` line on stderr and
the chat goes on; the exit status is then 1 (0 when every message got a reply). When the oldest turns are
left out of the prompt because the context is full, one note says so on stderr (once per conversation).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import torch

from llmlab.config.sampling import CHAT_SAMPLING, INFERENCE_DTYPES, SamplingConfig
from llmlab.generate.chat import ChatSession
from llmlab.models.smollm2 import DEFAULT_MODEL_NAME
from llmlab.nn.device import resolve_device
from llmlab.recipes.generate import check_template_name, warn_vanished
from llmlab.serve.memory import ConversationStore, Message, fit_conversation, run_sync
from llmlab.tokenizers.chat import render_prompt, resolve_template

DEFAULT_DB = Path("conversations.sqlite")  # the same default as `llmlab serve --db`
HELP = "commands: /reset (clear history)  /save FILE (write the conversation as JSON)  /help  /exit"


class ChatResult(NamedTuple):
    """What a `run_chat` produced: replies generated and messages that failed (bad input, too long, ...)."""

    replies: int
    failed: int


def _error(err: TextIO, message: str) -> None:
    print(f"llmlab: error: {message}", file=err, flush=True)


class StoredChat:
    """A `ChatSession` kept in a `ConversationStore` conversation (`llmlab chat --session NAME`).

    Before each message the session's system prompt and history are rebuilt from the store by
    `llmlab.serve.memory.fit_conversation` (system prompt + latest summary + the turns after it), summarising the
    oldest turns with the session's own model (greedy, a fresh context each time) when the prompt would exceed the
    session's prompt budget; each exchanged message is stored after the reply.
    """

    def __init__(self, store: ConversationStore, name: str, system: str | None) -> None:
        found = store.by_name(name)
        if found is None:
            found = store.create(name=name, system=system)
        elif system is not None:
            store.update(found["id"], system=system)
        self.store, self.name, self.conversation_id = store, name, found["id"]
        self.system: str | None = store.conversation(self.conversation_id)["system"]

    def stored_messages(self) -> int:
        return len(self.store.messages(self.conversation_id))

    def prepare(self, session: ChatSession, user_text: str, err: TextIO) -> None:
        """Load the prompt for `user_text` into `session` (summarising the oldest turns when needed)."""
        summary = self.store.summary(self.conversation_id)
        turns = self.store.messages(self.conversation_id, after=summary.upto_message_id if summary else 0)

        def count(messages: list[Message]) -> int:
            system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
            return len(render_prompt(session.tokenizer, session.template, system, messages[1 if system else 0 :]))

        fitting = fit_conversation(self.system, summary, turns, user_text, count, session.prompt_budget)
        fitted = run_sync(fitting, lambda request: _summarise(session, request))
        if fitted.summary is not None:
            self.store.add_summary(self.conversation_id, fitted.summary.upto_message_id, fitted.summary.text)
            print(
                f"llmlab: note: the context is full; the oldest turns are now summarised by the model: "
                f"{fitted.summary.text}",
                file=err,
                flush=True,
            )
        messages = fitted.messages
        session.system = messages[0]["content"] if messages[0]["role"] == "system" else None
        session.history = [m for m in messages[1 if session.system is not None else 0 : -1]]

    def record(self, user_text: str, reply: str) -> None:
        self.store.append(self.conversation_id, "user", user_text)
        self.store.append(self.conversation_id, "assistant", reply)

    def clear(self) -> None:
        self.store.clear(self.conversation_id)


def _summarise(session: ChatSession, request: list[Message]) -> str:
    """The model's reply to a summarisation request (greedy, in a fresh context of the same size)."""
    writer = ChatSession(
        session.model,
        session.tokenizer,
        template=session.template,
        system=request[0]["content"],
        sampling=session.sampling.replace(temperature=0.0),
        context_tokens=session.context_tokens,
        reuse_cache=False,
    )
    return writer.send(request[1]["content"])


def _command(session: ChatSession, line: str, err: TextIO, note: Any, memory: StoredChat | None = None) -> bool:
    """Run a /command; False for /exit. Feedback goes through `note`, errors to `err`."""
    command, _, arg = line.partition(" ")
    arg = arg.strip()
    if command in ("/exit", "/quit"):
        return False
    if command == "/reset":
        session.reset()
        if memory is not None:
            memory.clear()
        note("(history cleared)" if memory is None else f"(history of session {memory.name!r} cleared)")
    elif command == "/save":
        if not arg:
            _error(err, "/save needs a file name, e.g. /save chat.json")
            return True
        try:
            note(f"(saved {len(session.history)} messages to {session.save(arg)})")
        except OSError as e:
            _error(err, f"cannot save to {arg}: {e.strerror or e}")
    elif command == "/help":
        note(HELP)
    else:
        _error(err, f"unknown command {command}; {HELP}")
    return True


def _decode(raw: str | bytes, number: int) -> str:
    """A line of input as text; ValueError naming the line when it is not UTF-8."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"input line {number} is not UTF-8 text; it was skipped (convert the input to UTF-8)"
        ) from None


def run_chat(
    session: ChatSession,
    lines: Iterable[str | bytes],
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    interactive: bool = False,
    memory: StoredChat | None = None,
) -> ChatResult:
    """Chat over `lines`: each non-empty line is a user message (or a command); replies are streamed to `out`.

    Every reply is followed by a newline, so piped input gives one reply per input line. Command feedback
    goes to `err` in interactive mode only; errors and the note that the oldest turns were left out of the
    prompt (once) always do. With `memory` the conversation is loaded from and saved to its store (and
    summarised instead of cut when it outgrows the context). Lines may be bytes (piped stdin): a line that is
    not UTF-8 is an error. In interactive mode Ctrl-C stops the current reply (which is then not kept) and the
    chat goes on.
    """
    replies = failed = 0
    dropped_noted = False
    warned: set[str] = set()  # characters already reported as outside the vocabulary

    def note(msg: str) -> None:
        if interactive:
            print(msg, file=err, flush=True)

    for number, raw in enumerate(lines, 1):
        try:
            line = _decode(raw, number).strip()
            if line.startswith("/"):
                if not _command(session, line, err, note, memory):
                    break
                dropped_noted = dropped_noted and session.history != []
                continue
            if not line:
                continue
            warn_vanished(session.tokenizer, line, "message", err, warned)
            if memory is not None:
                memory.prepare(session, line, err)
            reply = session.send(line, on_text=lambda s: (out.write(s), out.flush()))
            if memory is not None:
                memory.record(line, reply)
        except ValueError as e:  # not UTF-8, or a message too long for the context: say so and keep chatting
            _error(err, str(e))
            failed += 1
            continue
        except KeyboardInterrupt:
            if not interactive:
                raise
            print("\n(reply interrupted; it is not kept in the history)", file=err, flush=True)
            continue
        out.write("\n")
        out.flush()
        replies += 1
        if session.dropped_turns and not dropped_noted:
            dropped_noted = True
            print(
                f"llmlab: note: the context is full; the oldest turns are left out of the prompt from now on "
                f"({session.dropped_turns} so far)",
                file=err,
                flush=True,
            )
    return ChatResult(replies, failed)


def _tty_lines(prompt: str = ">>> ") -> Iterator[str]:
    """Lines typed at a terminal (with readline editing), until EOF (Ctrl-D)."""
    try:
        import readline  # noqa: F401 - enables line editing and history for input()
    except ImportError:  # pragma: no cover - not on every platform
        pass
    while True:
        try:
            yield input(prompt)
        except EOFError:
            print(file=sys.stderr)
            return


def chat(
    checkpoint: Path | None,
    given: Mapping[str, Any],
    *,
    system: str | None = None,
    template: str = "auto",
    context_tokens: int | None = None,
    reuse_cache: bool = True,
    dtype: str = "float32",
    device: str = "cpu",
    session_name: str | None = None,
    db: Path | None = None,
    keep_quantized: bool = False,
) -> int:
    """`llmlab chat`: check every option, load the model, chat on the terminal or over piped stdin.

    `session_name` keeps the conversation in the store at `db` (default `DEFAULT_DB`), continuing it if it exists.

    Returns:
        The exit status: 1 when a piped message failed, else 0.
    """
    sampling: SamplingConfig = CHAT_SAMPLING.replace(**given).validate()
    if sampling.max_new_tokens < 1:
        raise ValueError("max_new_tokens (--max-new-tokens) must be >= 1 for a chat reply (got 0)")
    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"unknown --dtype {dtype!r}; use one of {', '.join(INFERENCE_DTYPES)}")
    torch_device = resolve_device(device)
    check_template_name(template)
    memory = _open_session(session_name, db, system)
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"loading {checkpoint or DEFAULT_MODEL_NAME} ...", file=sys.stderr, flush=True)
    from llmlab.hub import load_for_inference  # looked up per call (tests patch it)

    loaded = load_for_inference(checkpoint, device=torch_device, quantized=keep_quantized)
    model = loaded.model.to(getattr(torch, dtype))
    template_source, template_label = resolve_template(template, loaded.chat_template)
    session = ChatSession(
        model,
        loaded.tokenizer,
        template=template_source,
        system=system,
        sampling=sampling,
        context_tokens=context_tokens,
        reuse_cache=reuse_cache,
    )
    if not interactive:
        lines = getattr(sys.stdin, "buffer", sys.stdin)
        return 1 if run_chat(session, lines, interactive=False, memory=memory).failed else 0
    print(
        f"chatting with {loaded.source} (template {template_label}, context {session.context_tokens} tokens)\n{HELP}",
        file=sys.stderr,
        flush=True,
    )
    if memory is not None:
        print(
            f"session {memory.name!r} in {memory.store.path}: {memory.stored_messages()} stored messages",
            file=sys.stderr,
            flush=True,
        )
    run_chat(session, _tty_lines(), interactive=True, memory=memory)
    return 0


def _open_session(name: str | None, db: Path | None, system: str | None) -> StoredChat | None:
    """The stored conversation of `--session NAME` (None without it); checks --db before the model loads."""
    if name is None:
        if db is not None:
            raise ValueError("--db keeps a --session; pass --session NAME too (or leave out --db)")
        return None
    if not name.strip():
        raise ValueError("--session needs a non-empty name, e.g. --session work")
    return StoredChat(ConversationStore(DEFAULT_DB if db is None else db), name, system)
