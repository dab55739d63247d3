"""`create_app(state)`: the FastAPI app of `llmlab serve` — OpenAI's routes, health, the web chat page.

Routes: GET /health (503 until the model is loaded), GET /v1/models, POST /v1/chat/completions, POST
/v1/completions (`llmlab.serve.openai_chat`, `openai_completions`), POST /v1/embeddings (`openai_embeddings`:
404 unless an encoder was loaded), the routers in `state.extra_routers` (the
conversation store's /api routes) and the static web chat at / (`llmlab/serve/static/index.html`).

Security: with an API key, every /v1 and /api route requires `Authorization: Bearer <key>`, compared in
constant time (`hmac.compare_digest`); the key is never logged nor echoed. No CORS headers unless
`state.cors_origin` names the one allowed origin. Request bodies are JSON only (nothing is unpickled).
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from llmlab.serve import openai_chat, openai_completions, openai_embeddings
from llmlab.serve.choices import ServeState
from llmlab.serve.errors import APIError, install_error_handlers

STATIC_DIR = Path(__file__).parent / "static"


def require_api_key(request: Request) -> None:
    """401 unless the request carries the server's key as a Bearer token (no key set: every request passes)."""
    key: str | None = request.app.state.serve.api_key
    if not key:
        return
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
        raise APIError(
            401,
            "invalid or missing API key: send it as 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(state: ServeState) -> FastAPI:
    """The app serving `state` (see the module docstring)."""
    app = FastAPI(title="llmlab serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.serve = state
    install_error_handlers(app)
    if state.cors_origin:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=[state.cors_origin],
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
        )
    auth = [Depends(require_api_key)]
    app.include_router(openai_chat.router, dependencies=auth)
    app.include_router(openai_completions.router, dependencies=auth)
    for router in state.extra_routers:
        app.include_router(router, dependencies=auth)
    app.include_router(openai_embeddings.missing_router, dependencies=auth)  # 404 unless --embedding-model

    @app.get("/health")
    async def health() -> JSONResponse:
        if not state.ready or state.runner is None:
            raise APIError(503, "the model is loading", type="server_error", headers={"Retry-After": "5"})
        runner = state.runner
        load = {"active": runner.active, "max_queue": runner.max_queue, "max_batch": runner.engine.max_batch}
        return JSONResponse({"status": "ok", "model": state.model_name, **load})

    @app.get("/v1/models", dependencies=auth)
    async def models() -> dict[str, Any]:
        names = [state.model_name, *([state.embedding_model_name] if state.embedding_model_name else [])]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "llmlab"} for n in names],
        }

    @app.get("/", include_in_schema=False)
    async def index() -> Any:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
