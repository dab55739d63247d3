"""`llmlab serve`: parse the options and hand them to `llmlab.recipes.serve.run_serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import DeviceOption, KeepQuantizedOption


def register(app: typer.Typer) -> None:
    """Attach `llmlab serve` to the root app."""

    @app.command("serve")
    def serve_cmd(
        model: Annotated[
            Path | None,
            typer.Option(
                "--model",
                "--checkpoint",
                "-m",
                "-c",
                help="A .gguf file, checkpoint/run folder, Hugging Face folder, or adapter / finetune run folder "
                "(default: SmolLM2-135M-Instruct).",
            ),
        ] = None,
        host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0: every interface).")] = (
            "127.0.0.1"
        ),
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8000,
        api_key: Annotated[
            str | None,
            typer.Option("--api-key", help="Require 'Authorization: Bearer KEY' on /v1 and /api (or LLMLAB_API_KEY)."),
        ] = None,
        max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Sequences decoded together.")] = 8,
        max_queue: Annotated[
            int, typer.Option("--max-queue", min=1, help="Requests waiting or running at most; beyond: HTTP 429.")
        ] = 64,
        max_context: Annotated[
            int | None,
            typer.Option("--max-context", min=2, help="Prompt + reply tokens per request (default: the model's)."),
        ] = None,
        max_tokens_cap: Annotated[
            int | None,
            typer.Option("--max-tokens-cap", min=1, help="Largest max_tokens accepted (larger: HTTP 400)."),
        ] = None,
        template: Annotated[
            str, typer.Option("--template", help="Chat template: auto (the model's own), chatml, llama3, llama2, zh.")
        ] = "auto",
        cors_origin: Annotated[
            str | None, typer.Option("--cors-origin", help="Allow this one browser origin (default: no CORS).")
        ] = None,
        db: Annotated[
            Path | None, typer.Option("--db", help="SQLite file of the web chat's conversations (default: none).")
        ] = None,
        device: DeviceOption = "cpu",
        keep_quantized: KeepQuantizedOption = False,
        embedding_model: Annotated[
            str | None,
            typer.Option(
                "--embedding-model",
                help="Encoder folder for /v1/embeddings, or 'default' (all-MiniLM-L6-v2); without it the route is 404.",
            ),
        ] = None,
    ) -> None:
        """Serve a model over HTTP: an OpenAI-compatible API (/v1) with continuous batching, and a web chat (/).

        Point the official openai client at http://HOST:PORT/v1. A full queue answers 429 with Retry-After;
        a prompt that does not fit --max-context, or max_tokens above --max-tokens-cap, answers 400.
        """
        from llmlab.recipes.serve import ServeRequest, run_serve  # torch loads only when the command runs

        run_serve(
            ServeRequest(
                model=model,
                host=host,
                port=port,
                api_key=api_key,
                max_batch=max_batch,
                max_queue=max_queue,
                max_context=max_context,
                max_tokens_cap=max_tokens_cap,
                template=template,
                cors_origin=cors_origin,
                db=db,
                device=device,
                keep_quantized=keep_quantized,
                embedding_model=embedding_model,
            )
        )
