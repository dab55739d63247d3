"""`llmlab convert`: move a checkpoint between llmlab, Hugging Face and GGUF formats (see llmlab.recipes.convert)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option


def convert_cmd(
    src: Annotated[
        Path,
        typer.Option(
            "--from",
            help="llmlab / Hugging Face folder, .gguf file, pretrain or finetune run folder, or a LoRA/IA3 adapter "
            "(merged into its base)",
        ),
    ],
    dst: Annotated[Path, typer.Option("--to", help="output folder, or .gguf file")],
    fmt: Annotated[
        str | None, typer.Option("--format", help="llmlab | hf | gguf (default: gguf for *.gguf, else llmlab)")
    ] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="f32 | f16 | q8_0 (q8_0: GGUF only)")] = "f32",
    overwrite: overwrite_option("replace an earlier llmlab output (never a folder llmlab did not create)") = False,
    no_tokenizer: Annotated[bool, typer.Option("--no-tokenizer", help="convert the weights only")] = False,
) -> None:
    """Convert a checkpoint (weights, tokenizer, chat template) to another format."""
    from llmlab.recipes.convert import convert

    r = convert(src, dst, fmt, dtype, overwrite=overwrite, with_tokenizer=not no_tokenizer)
    typer.echo(
        f"converted {r.family} model ({r.num_parameters:,} parameters) from {r.source_format} {r.source} "
        f"to {r.output_format} {r.output} as {r.dtype} in {r.seconds:.1f}s "
        f"(tokenizer: {'yes' if r.tokenizer else 'no'}, chat template: {'yes' if r.chat_template else 'no'})"
    )
    for note in r.notes:
        typer.echo(f"note: {note}")


def register(app: typer.Typer) -> None:
    """Add the `convert` command to `app`."""
    app.command("convert")(convert_cmd)
