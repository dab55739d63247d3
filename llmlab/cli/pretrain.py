"""CLI for pretrain (placeholder until its owner fills it in)."""

import typer


def register(app: typer.Typer) -> None:
    """Attach this module's commands to the root app."""
