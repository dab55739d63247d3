"""`llmlab embed` (being built for issue 14)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach `llmlab embed` to the root app (nothing yet)."""
