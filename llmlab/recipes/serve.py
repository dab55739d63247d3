"""`llmlab serve`: load a model, start the continuous-batching engine and serve the OpenAI-compatible app.

    llmlab serve --model runs/tiny --port 8000 --api-key secret --max-batch 8
    curl -H 'Authorization: Bearer secret' localhost:8000/v1/chat/completions \\
         -d '{"messages": [{"role": "user", "content": "Hi"}], "stream": true}'
    llmlab serve --embedding-model default     # also POST /v1/embeddings with all-MiniLM-L6-v2

Every option is checked before the model is loaded; the server binds its port once the model is ready (so
/health answers "ok" as soon as it answers at all). The API key comes from `--api-key` or `LLMLAB_API_KEY` and
is never printed.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_KEY_ENV = "LLMLAB_API_KEY"
REPLY_TOKENS = 256  # the longest web-chat reply (at most half the context, at most --max-tokens-cap)


@dataclass
class ServeRequest:
    """The options of `llmlab serve` (see `llmlab.cli.serve` for their help)."""

    model: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch: int = 8
    max_queue: int = 64
    max_context: int | None = None
    max_tokens_cap: int | None = None
    template: str = "auto"
    cors_origin: str | None = None
    db: Path | None = None
    device: str = "cpu"
    keep_quantized: bool = False
    model_name: str | None = None
    embedding_model: str | None = None

    def validate(self) -> ServeRequest:
        """One-line ValueErrors for options that cannot work, before anything is loaded."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be in 0..65535 (got {self.port})")
        for flag, value in (("--max-batch", self.max_batch), ("--max-queue", self.max_queue)):
            if value < 1:
                raise ValueError(f"{flag} must be >= 1 (got {value})")
        if self.max_queue < self.max_batch:
            raise ValueError(f"--max-queue ({self.max_queue}) must be >= --max-batch ({self.max_batch})")
        if self.max_context is not None and self.max_context < 2:
            raise ValueError(f"--max-context must be >= 2 (got {self.max_context})")
        if self.max_tokens_cap is not None and self.max_tokens_cap < 1:
            raise ValueError(f"--max-tokens-cap must be >= 1 (got {self.max_tokens_cap})")
        if self.embedding_model not in (None, "default") and not Path(self.embedding_model).exists():
            raise ValueError(f"--embedding-model {self.embedding_model} not found; pass an encoder folder or 'default'")
        if self.db is not None and self.db.is_dir():
            raise ValueError(f"--db {self.db} is a folder; pass a file path such as conversations.sqlite")
        return self


def build_state(request: ServeRequest, loaded: Any | None = None) -> Any:
    """Load the model (unless `loaded` is given), start the engine; the `ServeState` the app serves."""
    from llmlab.hub import load_for_inference
    from llmlab.nn.device import resolve_device
    from llmlab.serve.choices import ServeState
    from llmlab.serve.engine import Engine, check_engine_model
    from llmlab.serve.openai_embeddings import embeddings_router, load_embedder
    from llmlab.serve.runner import EngineRunner
    from llmlab.tokenizers.chat import resolve_template

    embedder = None  # the encoder of /v1/embeddings, loaded before the engine starts
    if request.embedding_model is not None:
        embedder = load_embedder(request.embedding_model, device=resolve_device(request.device))
    loaded = loaded or load_for_inference(
        request.model, device=resolve_device(request.device), quantized=request.keep_quantized
    )
    check_engine_model(loaded.model)
    template = None
    if request.template != "auto" or loaded.chat_template:
        template, _ = resolve_template(request.template, loaded.chat_template)
    context = loaded.model.config.block_size
    max_context = min(request.max_context or context, context)
    if request.max_context is not None and request.max_context > context:
        raise ValueError(f"--max-context {request.max_context} is above the model's context of {context}")
    engine = Engine(loaded.model, loaded.tokenizer, max_batch=request.max_batch, max_len=max_context)
    runner = EngineRunner(engine, max_queue=request.max_queue).start()
    name = request.model_name or (Path(loaded.source).name if request.model is not None else loaded.source)
    state = ServeState(
        runner=runner,
        tokenizer=loaded.tokenizer,
        chat_template=template,
        model_name=name or "llmlab",
        api_key=request.api_key or os.environ.get(API_KEY_ENV) or None,
        cors_origin=request.cors_origin,
        max_context=max_context,
        max_tokens_cap=min(request.max_tokens_cap or max_context, max_context),
    )
    if request.db is not None:
        state.extra_routers.append(conversation_routes(state, request.db))
    if embedder is not None:
        state.extra_routers.append(embeddings_router(embedder))
        state.embedding_model_name = embedder.name
    return state


def conversation_routes(state: Any, db: Path) -> Any:
    """The conversation store's /api routes over `db` (llmlab.serve.conversations), fed by the engine."""
    from llmlab.serve.choices import complete_text, count_chat_tokens
    from llmlab.serve.conversations import conversations_router
    from llmlab.serve.memory import ConversationStore

    reply_tokens = min(REPLY_TOKENS, state.max_tokens_cap, state.max_context // 2)

    def complete(messages: Any, temperature: float = 0.7) -> Any:
        return complete_text(state, messages, temperature=temperature, max_tokens=reply_tokens)

    def count(messages: Any) -> int:
        return count_chat_tokens(state, messages)

    store = ConversationStore(db)
    return conversations_router(store, complete, count, state.max_context, reply_tokens=reply_tokens)


def run_serve(request: ServeRequest) -> None:
    """`llmlab serve`: validate, load, serve until Ctrl-C."""
    import uvicorn

    from llmlab.serve.app import create_app

    request.validate()
    state = build_state(request)
    app = create_app(state)
    print(
        f"llmlab: serving {state.model_name} on http://{request.host}:{request.port} "
        f"(OpenAI API at /v1, web chat at /; {'API key required' if state.api_key else 'no API key'})",
        file=sys.stderr,
    )
    try:
        uvicorn.run(app, host=request.host, port=request.port, log_level="info")
    finally:
        state.runner.close()
