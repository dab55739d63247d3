"""`llmlab chat`: the terminal REPL around `llmlab.generate.chat.ChatSession`.

`run_chat` drives a session from lines of text (a terminal or piped stdin): plain lines are user messages,
`/reset`, `/save FILE`, `/help` and `/exit` are commands. `chat` validates every option (sampling, device,
dtype, template name) before the model loads, then runs the REPL.

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
from llmlab.tokenizers.chat import resolve_template

HELP = "commands: /reset (clear history)  /save FILE (write the conversation as JSON)  /help  /exit"


class ChatResult(NamedTuple):
    """What a `run_chat` produced: replies generated and messages that failed (bad input, too long, ...)."""

    replies: int
    failed: int


def _error(err: TextIO, message: str) -> None:
    print(f"llmlab: error: {message}", file=err, flush=True)


def _command(session: ChatSession, line: str, err: TextIO, note: Any) -> bool:
    """Run a /command; False for /exit. Feedback goes through `note`, errors to `err`."""
    command, _, arg = line.partition(" ")
    arg = arg.strip()
    if command in ("/exit", "/quit"):
        return False
    if command == "/reset":
        session.reset()
        note("(history cleared)")
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
) -> ChatResult:
    """Chat over `lines`: each non-empty line is a user message (or a command); replies are streamed to `out`.

    Every reply is followed by a newline, so piped input gives one reply per input line. Command feedback
    goes to `err` in interactive mode only; errors and the note that the oldest turns were left out of the
    prompt (once) always do. Lines may be bytes (piped stdin): a line that is not UTF-8 is an error. In
    interactive mode Ctrl-C stops the current reply (which is then not kept) and the chat goes on.
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
                if not _command(session, line, err, note):
                    break
                dropped_noted = dropped_noted and session.history != []
                continue
            if not line:
                continue
            warn_vanished(session.tokenizer, line, "message", err, warned)
            session.send(line, on_text=lambda s: (out.write(s), out.flush()))
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
) -> int:
    """`llmlab chat`: check every option, load the model, chat on the terminal or over piped stdin.

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
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"loading {checkpoint or DEFAULT_MODEL_NAME} ...", file=sys.stderr, flush=True)
    from llmlab.hub import load_for_inference  # looked up per call (tests patch it)

    loaded = load_for_inference(checkpoint, device=torch_device)
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
        return 1 if run_chat(session, getattr(sys.stdin, "buffer", sys.stdin), interactive=False).failed else 0
    print(
        f"chatting with {loaded.source} (template {template_label}, context {session.context_tokens} tokens)\n{HELP}",
        file=sys.stderr,
        flush=True,
    )
    run_chat(session, _tty_lines(), interactive=True)
    return 0
