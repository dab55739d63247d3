"""`llmlab chat`: talk to a model in the terminal, or pipe messages through it (one reply per input line)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated

import typer

from llmlab.cli.options import (
    FrequencyPenaltyOption,
    MinPOption,
    ModelOption,
    PresencePenaltyOption,
    RepetitionPenaltyOption,
)

DTYPES = ("float32", "bfloat16", "float16")


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


def register(app: typer.Typer) -> None:
    """Attach `llmlab chat` to the root app."""

    @app.command("chat")
    def chat_cmd(
        checkpoint: ModelOption = None,
        system: Annotated[str | None, typer.Option("--system", "-s", help="System prompt.")] = None,
        template: Annotated[
            str,
            typer.Option("--template", help="auto (the model's own), chatml, llama3, llama2, zh, or a .jinja file."),
        ] = "auto",
        max_new_tokens: Annotated[
            int, typer.Option("--max-new-tokens", "-n", min=1, help="Longest reply, in tokens.")
        ] = 256,
        temperature: Annotated[float, typer.Option("--temperature", "-t", min=0.0, help="0 = greedy decoding.")] = 0.7,
        top_k: Annotated[
            int | None, typer.Option("--top-k", min=0, help="Keep the k most likely tokens (0 = all).")
        ] = 50,
        top_p: Annotated[float | None, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass.")] = 0.9,
        min_p: MinPOption = None,
        repetition_penalty: RepetitionPenaltyOption = None,
        frequency_penalty: FrequencyPenaltyOption = 0.0,
        presence_penalty: PresencePenaltyOption = 0.0,
        seed: Annotated[int | None, typer.Option("--seed", help="Random seed (reproduces the whole chat).")] = None,
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
        dtype: Annotated[str, typer.Option("--dtype", help=f"Model dtype: {', '.join(DTYPES)}.")] = "float32",
        device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    ) -> None:
        """Chat with a model: system prompt, multi-turn history, streamed replies.

        Type a message and press Enter. Commands: /reset (clear the history), /save FILE (write the
        conversation as JSON), /help, /exit (or Ctrl-D). With piped stdin every line is one message and
        each reply is printed on its own line, without prompts:

            printf 'Hi\\nWhat is 2+2?\\n' | llmlab chat --temperature 0
        """
        import torch

        from llmlab.generate.checkpoint import load_for_inference
        from llmlab.recipes.chat import HELP, ChatSession, resolve_template, run_chat

        if dtype not in DTYPES:
            raise ValueError(f"unknown --dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        interactive = sys.stdin.isatty()
        if interactive:
            print(f"loading {checkpoint or 'SmolLM2-135M-Instruct'} ...", file=sys.stderr, flush=True)
        loaded = load_for_inference(checkpoint, device=device)
        model = loaded.model.to(getattr(torch, dtype))
        template_source, template_label = resolve_template(template, loaded.chat_template)
        session = ChatSession(
            model,
            loaded.tokenizer,
            template=template_source,
            system=system,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k or None,
            top_p=top_p,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            seed=seed,
            context_tokens=context_tokens,
            reuse_cache=reuse_cache,
        )
        if interactive:
            print(
                f"chatting with {loaded.source} (template {template_label}, context {session.context_tokens} tokens)"
                f"\n{HELP}",
                file=sys.stderr,
                flush=True,
            )
            run_chat(session, _tty_lines(), interactive=True)
        else:
            run_chat(session, sys.stdin, interactive=False)
