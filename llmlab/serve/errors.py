"""OpenAI-shaped errors: every 4xx/5xx body is `{"error": {"message", "type", "param", "code"}}`.

OpenAI's API reference (https://platform.openai.com/docs/guides/error-codes) answers bad requests with 400
`invalid_request_error` (and `param` naming the field), a bad key with 401 `invalid_api_key`, overload with 429
and unknown routes with 404. FastAPI's own 422 validation errors are turned into 400s naming the field.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("llmlab.serve")

_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          405: "invalid_request_error", 413: "invalid_request_error", 429: "rate_limit_error"}


class APIError(Exception):
    """An error answered with OpenAI's shape: status, message, param (the request field), code."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,  # noqa: A002 - OpenAI's field name
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 `invalid_request_error` naming the request field `param`."""
    return APIError(400, message, param=param, code=code)


def _field_name(loc: tuple[Any, ...]) -> str | None:
    """`("body", "messages", 0, "role")` -> "messages[0].role" (OpenAI names nested fields this way)."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif not isinstance(part, str) or part.startswith(("function-after", "function-before")):
            continue
        elif part in ("str", "list[str]", "int", "list[int]", "list[list[int]]", "json-or-python[json=list[int],python=list[int]]"):
            continue  # the union member pydantic tried, not a field
        else:
            name += ("." if name else "") + part
    return name or None


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error raised in `app` with OpenAI's error shape."""

    @app.exception_handler(APIError)
    async def api_error(_: Request, error: APIError) -> JSONResponse:
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {}
        param = _field_name(tuple(first.get("loc", ())))
        message = str(first.get("msg", "invalid request"))
        if param:
            message = f"{param}: {message}"
        return bad_request(message, param=param, code="invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return APIError(error.status_code, str(error.detail), headers=getattr(error, "headers", None)).response()

    @app.exception_handler(Exception)
    async def server_error(_: Request, error: Exception) -> JSONResponse:
        logger.exception("unhandled error while serving a request")
        return APIError(500, f"internal server error: {type(error).__name__}", type="server_error").response()
