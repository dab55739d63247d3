"""The `llmlab` command: dispatch only. Each command group lives in its own module and registers itself.

User mistakes (ValueError, FileNotFoundError, ...) are printed as one line `llmlab: error: ...` with a
non-zero exit status, never a traceback. Set LLMLAB_DEBUG=1 to see the traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from llmlab.cli import chat, convert, data, evaluate, finetune, generate, peft_compare, pretrain, quickstart, tokenizer

app = typer.Typer(
    name="llmlab",
    help="llmlab: build a tokenizer and corpus, pretrain, generate and evaluate LLMs on a laptop CPU.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
for module in (quickstart, tokenizer, data, pretrain, finetune, peft_compare, generate, chat, evaluate, convert):
    module.register(app)

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, KeyError)


def main(argv: list[str] | None = None) -> None:
    """Entry point for the `llmlab` console script and `python -m llmlab`."""
    try:
        app(args=argv, prog_name="llmlab")
    except USER_ERRORS as e:
        if os.environ.get("LLMLAB_DEBUG"):
            raise
        # str(KeyError) wraps the message in quotes; the message itself is args[0]
        msg = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip() or type(e).__name__
        print(f"llmlab: error: {msg.splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("llmlab: interrupted", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if e.code == 130:  # Ctrl-C caught by typer/click, which exits 130 silently
            print("llmlab: interrupted", file=sys.stderr)
        raise
