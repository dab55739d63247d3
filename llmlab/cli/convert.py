"""`llmlab convert`: move a checkpoint between llmlab, Hugging Face and GGUF formats (see llmlab.recipes.convert)."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the `convert` command to `app`."""

    @app.command("convert")
    def convert_cmd(
        src: Path = typer.Option(..., "--from", help="llmlab folder, Hugging Face folder or .gguf file"),
        dst: Path = typer.Option(..., "--to", help="output folder, or .gguf file"),
        fmt: str = typer.Option(None, "--format", help="llmlab | hf | gguf (default: gguf for *.gguf, else llmlab)"),
        dtype: str = typer.Option("f32", "--dtype", help="f32 | f16 | q8_0 (q8_0: GGUF only)"),
        overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output"),
        no_tokenizer: bool = typer.Option(False, "--no-tokenizer", help="convert the weights only"),
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
