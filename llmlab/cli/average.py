"""`llmlab average`: a uniform or weighted model soup of several checkpoints (see llmlab.recipes.average)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option


def average_cmd(
    checkpoints: Annotated[
        list[Path],
        typer.Argument(help="two or more checkpoints of one architecture (llmlab / HF folders, .gguf, run folders)"),
    ],
    out: Annotated[Path, typer.Option("--out", help="output folder, or .gguf file")],
    weights: Annotated[
        str | None, typer.Option("--weights", help="one weight per checkpoint, e.g. 0.7,0.3 (default: uniform)")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="llmlab | hf | gguf (default: the inputs' format; gguf for *.gguf)"),
    ] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="f32 | f16 | q8_0 (q8_0: GGUF only)")] = "f32",
    overwrite: overwrite_option("replace an earlier llmlab output (never a folder llmlab did not create)") = False,
) -> None:
    """Average the weights of checkpoints that share an architecture (a model soup, Wortsman et al. 2022)."""
    from llmlab.recipes.average import average, describe

    typer.echo(describe(average(list(checkpoints), out, weights, fmt, dtype, overwrite=overwrite)))


def register(app: typer.Typer) -> None:
    """Add the `average` command to `app`."""
    app.command("average")(average_cmd)
