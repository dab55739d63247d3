"""`llmlab prune`: magnitude / global-magnitude / N:M / Wanda / structured pruning (see llmlab.recipes.prune)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option


def prune_cmd(
    out: Annotated[Path, typer.Option("--out", help="output folder (llmlab format, with the tokenizer)")],
    method: Annotated[
        str, typer.Option("--method", help="magnitude | global-magnitude | 2:4 (any N:M) | wanda | structured")
    ],
    model: Annotated[
        str | None, typer.Option("--model", help="model folder, .gguf file or run folder (default: packaged SmolLM2)")
    ] = None,
    sparsity: Annotated[
        float | None, typer.Option("--sparsity", help="fraction of weights (structured: heads and neurons) to remove")
    ] = None,
    heads: Annotated[int | None, typer.Option("--heads", help="structured: query heads removed per layer")] = None,
    neurons: Annotated[int | None, typer.Option("--neurons", help="structured: MLP neurons removed per layer")] = None,
    importance: Annotated[str, typer.Option("--importance", help="structured: weight | activation")] = "weight",
    score: Annotated[str, typer.Option("--score", help="N:M: magnitude | wanda")] = "magnitude",
    calibration: Annotated[
        str | None,
        typer.Option("--calibration", help="corpus for activations: shakespeare | tinyshakespeare | FILE | FOLDER"),
    ] = None,
    calibration_samples: Annotated[int, typer.Option("--calibration-samples", help="calibration windows")] = 32,
    calibration_length: Annotated[int, typer.Option("--calibration-length", help="tokens per window")] = 256,
    steps: Annotated[int, typer.Option("--steps", help="prune in this many stages (iterative pruning)")] = 1,
    recover_steps: Annotated[
        int, typer.Option("--recover-steps", help="fine-tuning steps after each stage (needs --data)")
    ] = 0,
    data: Annotated[
        str | None, typer.Option("--data", help="recovery data: a JSONL SFT file or a plain text file")
    ] = None,
    lr: Annotated[float, typer.Option("--lr", help="recovery learning rate")] = 5e-5,
    batch_size: Annotated[int, typer.Option("--batch-size", help="recovery batch size")] = 4,
    device: Annotated[str, typer.Option("--device", help="cpu | cuda | mps | auto")] = "cpu",
    overwrite: overwrite_option("replace an earlier llmlab output (never a folder llmlab did not create)") = False,
) -> None:
    """Prune a model (masks, or heads/neurons removed), optionally in stages with recovery fine-tuning."""
    from llmlab.recipes.prune import RecoveryConfig, describe, prune

    recovery = RecoveryConfig(steps=recover_steps, data=data, lr=lr, batch_size=batch_size)
    report = prune(
        model, method, out, sparsity, heads=heads, neurons=neurons, importance=importance, score=score,
        calibration=calibration, calibration_samples=calibration_samples, calibration_length=calibration_length,
        steps=steps, recovery=recovery, device=device, overwrite=overwrite, say=typer.echo,
    )  # fmt: skip
    typer.echo(describe(report))


def register(app: typer.Typer) -> None:
    """Add the `prune` command to `app`."""
    app.command("prune")(prune_cmd)
