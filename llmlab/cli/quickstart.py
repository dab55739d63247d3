"""`llmlab quickstart`: tokenizer + corpus + pretraining + evaluation + samples + report, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    """Attach `llmlab quickstart` to the root app."""

    @app.command("quickstart")
    def quickstart_cmd(
        out_dir: Annotated[
            Path,
            typer.Option(
                "--out",
                "-o",
                help="Run folder (an earlier llmlab output there is replaced; another non-empty folder is refused).",
            ),
        ] = Path("runs/quickstart"),
        fast: Annotated[bool, typer.Option("--fast", help="Tiny model on a corpus slice: seconds, for tests.")] = False,
        max_iters: Annotated[
            int | None, typer.Option("--max-iters", min=1, help="Override the training steps.")
        ] = None,
        seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 1337,
    ) -> None:
        """Train a byte-level BPE tokenizer and a small GPT on the embedded Shakespeare corpus (~5 min on 2 cores),
        evaluate it, print samples and write runs/quickstart/report.md with a loss-curve PNG."""
        from rich.console import Console

        from llmlab.recipes.quickstart import quickstart

        quickstart(out_dir, fast=fast, max_iters=max_iters, seed=seed, console=Console())
