"""The rating web app (FastAPI): one static page and a small JSON API over a `Study`.

GET  /                       the page (static/index.html: vanilla JS, no CDN, English + 中文 labels)
GET  /api/study              {"criteria": [...], "pairs": n}: what the page needs to draw the form
GET  /api/next?rater=NAME    {"done": false, "assignment_id", "prompt", "left", "right", "progress"} — a random
                             pair NAME has not rated, sides in random order, no model names; or {"done": true}
POST /api/vote               {"rater", "assignment_id", "preference": left|right|tie,
                              "ratings": {"left": {criterion: 1..5}, "right": {...}}} -> {"ok", "progress"};
                             422 for a malformed vote or one that does not match an assignment served to NAME
GET  /api/progress[?rater=]  {"pairs", "votes", "raters": {name: votes}, "done"}
"""

from __future__ import annotations

import ipaddress
import socket
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StringConstraints

from llmlab.eval.human.store import CRITERIA, Study

RaterName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Score = Annotated[int, Field(ge=1, le=5, strict=True)]


class SideRatings(BaseModel):
    """The five rubric scores of one output (each 1-5, all required)."""

    model_config = {"extra": "forbid"}
    fluency: Score
    coherence: Score
    relevance: Score
    accuracy: Score
    safety: Score


class Ratings(BaseModel):
    model_config = {"extra": "forbid"}
    left: SideRatings
    right: SideRatings


class VoteIn(BaseModel):
    """A rater's vote on an assignment from /api/next."""

    model_config = {"extra": "forbid"}
    rater: RaterName
    assignment_id: int
    preference: Literal["left", "right", "tie"]
    ratings: Ratings


def page_html() -> str:
    """The static rating page shipped in the package."""
    return resources.files("llmlab.eval.human").joinpath("static/index.html").read_text(encoding="utf-8")


LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]


def create_app(study: Study, allowed_hosts: list[str] | None = None) -> FastAPI:
    """The app serving `study` (which stays open while the app runs).

    `allowed_hosts`: accept only requests whose Host header names one of these (a server on loopback takes
    `LOOPBACK_HOSTS`, so a web page elsewhere cannot reach it through DNS rebinding); None accepts any.
    """
    app = FastAPI(title="llmlab human evaluation", docs_url=None, redoc_url=None, openapi_url=None)
    if allowed_hosts is not None:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts)
    html = page_html()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return html

    @app.get("/api/study")
    def study_info() -> dict[str, Any]:
        return {"criteria": list(CRITERIA), "pairs": study.pair_count()}

    @app.get("/api/next")
    def next_pair(rater: Annotated[RaterName, Query()]) -> dict[str, Any]:
        assignment = study.next_assignment(rater)
        progress = study.progress(rater)
        if assignment is None:
            return {"done": True, "progress": progress}
        return {"done": False, **assignment, "progress": progress}

    @app.post("/api/vote")
    def vote(body: VoteIn) -> dict[str, Any]:
        try:
            study.record_vote(body.rater, body.assignment_id, body.preference, body.ratings.model_dump())
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        return {"ok": True, "progress": study.progress(body.rater)}

    @app.get("/api/progress")
    def progress(rater: str | None = None) -> dict[str, Any]:
        return study.progress(rater)

    return app


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port).

    Raises:
        ValueError: one line naming the address when it cannot be used (in use, not this machine's).
    """
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        raise ValueError(
            f"cannot serve on {host}:{port} ({e.strerror or e}); choose another --port or --host"
        ) from None
    return sock


def serve(study: Study, sock: socket.socket) -> None:
    """Run the app with uvicorn on the listening socket `sock` (`listen`) until interrupted (Ctrl-C)."""
    import uvicorn

    host = sock.getsockname()[0]
    hosts = LOOPBACK_HOSTS if ipaddress.ip_address(host).is_loopback else None
    server = uvicorn.Server(uvicorn.Config(create_app(study, allowed_hosts=hosts), log_level="warning"))
    server.run(sockets=[sock])
