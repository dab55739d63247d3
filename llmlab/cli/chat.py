"""`llmlab chat`: parse the options and hand them to `llmlab.recipes.chat.chat`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from llmlab.cli.options import DeviceOption, KeepQuantizedOption, ModelOption, sampling_options
from llmlab.config.sampling import CHAT_OPTIONS, CHAT_SAMPLING, INFERENCE_DTYPES


def register(app: typer.Typer) -> None:
    """Attach `llmlab chat` to the root app."""

    @app.command("chat")
    @sampling_options(CHAT_SAMPLING, CHAT_OPTIONS)
    def chat_cmd(
        checkpoint: ModelOption = None,
        system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
        template: Annotated[
            str,
            typer.Option("--template", help="auto (the model's own), chatml, llama3, llama2, zh, or a .jinja file."),
        ] = "auto",
        context_tokens: Annotated[
            int | None,
            typer.Option(
                "--context-tokens",
                min=2,
                help="Prompt + reply tokens; oldest turns are dropped to fit (default: model's).",
            ),
        ] = None,
        reuse_cache: Annotated[
            bool,
            typer.Option(
                "--reuse-cache/--no-reuse-cache",
                help="Keep the KV cache between turns and prefill only the new part of the prompt (same replies).",
            ),
        ] = True,
        dtype: Annotated[str, typer.Option("--dtype", help=f"Model dtype: {', '.join(INFERENCE_DTYPES)}.")] = "float32",
        device: DeviceOption = "cpu",
        keep_quantized: KeepQuantizedOption = False,
        session: Annotated[
            str | None,
            typer.Option(
                "--session",
                help="Keep the conversation under this name in --db and continue it next time; "
                "the oldest turns are summarised by the model when the context is full.",
            ),
        ] = None,
        db: Annotated[
            Path | None,
            typer.Option("--db", help="The conversation store of --session (default conversations.sqlite)."),
        ] = None,
        sampling_given: dict[str, Any] | None = None,
    ) -> None:
        """Chat with a model: system prompt, multi-turn history, streamed replies.

        Type a message and press Enter. Commands: /reset (clear the history), /save FILE (write the
        conversation as JSON), /help, /exit (or Ctrl-D). With piped stdin every line is one message and
        each reply is printed on its own line, without prompts; the exit status is 1 when a message failed
        (not UTF-8, too long for the context), each failure reported on stderr:

            printf 'Hi\\nWhat is 2+2?\\n' | llmlab chat --temperature 0

        With --session NAME the conversation is stored in --db (the SQLite file `llmlab serve --db` uses) and
        the next `llmlab chat --session NAME` continues it.
        """
        from llmlab.recipes.chat import chat  # torch and the model code load only when the command runs

        status = chat(
            checkpoint,
            sampling_given or {},
            system=system,
            template=template,
            context_tokens=context_tokens,
            reuse_cache=reuse_cache,
            dtype=dtype,
            device=device,
            session_name=session,
            db=db,
            keep_quantized=keep_quantized,
        )
        if status:
            raise typer.Exit(status)
