"""`llmlab quantize`: quantize a model's weights into a folder that generate/chat/serve/eval load (see
llmlab.recipes.quantize)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option


def quantize_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder")],
    scheme: Annotated[str, typer.Option("--scheme", help="int8 | int4 | nf4 | dynamic-int8 | gptq-int4")],
    model: Annotated[
        Path | None,
        typer.Option(
            "--model", help="a .gguf file, checkpoint/run folder or HF folder (default: SmolLM2-135M-Instruct)"
        ),
    ] = None,
    group_size: Annotated[
        int | None,
        typer.Option(
            "--group-size", help="inputs per scale: 32/64/128 for int4/nf4/gptq-int4 (default 64); int8: per channel"
        ),
    ] = None,
    asymmetric: Annotated[
        bool, typer.Option("--asymmetric", help="int4/gptq-int4: min/max groups with a zero point")
    ] = False,
    calibration: Annotated[
        str | None,
        typer.Option("--calibration", help="gptq-int4: a text/JSONL file, a folder or a built-in corpus (shakespeare)"),
    ] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", help="calibration windows")] = 32,
    calibration_tokens: Annotated[int, typer.Option("--calibration-tokens", help="tokens per window")] = 512,
    overwrite: overwrite_option("replace an earlier llmlab output (never a folder llmlab did not create)") = False,
) -> None:
    """Quantize a model (int8, int4, NF4, dynamic int8 or GPTQ int4) and write it with its tokenizer."""
    from llmlab.recipes.quantize import describe, quantize_model

    report = quantize_model(
        model, scheme, out, group_size=group_size, symmetric=not asymmetric, calibration=calibration,
        calibration_samples=calibration_samples, calibration_tokens=calibration_tokens, overwrite=overwrite,
    )  # fmt: skip
    typer.echo(describe(report))


def register(app: typer.Typer) -> None:
    """Add the `quantize` command to `app`."""
    app.command("quantize")(quantize_cmd)
