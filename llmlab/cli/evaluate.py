"""`llmlab eval ...`: evaluate a checkpoint (`llmlab eval perplexity`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli import eval_human, eval_metrics

eval_app = typer.Typer(name="eval", help="Evaluate a trained model.", no_args_is_help=True)


@eval_app.command("perplexity")
def perplexity_cmd(
    checkpoint: Annotated[
        Path,
        typer.Option(
            "--checkpoint", "-c", help="Checkpoint/run folder, .gguf file, HF folder or adapter/finetune run folder."
        ),
    ],
    file: Annotated[Path, typer.Option("--file", "-f", help="Held-out UTF-8 text file to score.")],
    stride: Annotated[
        int | None, typer.Option("--stride", min=1, help="Window step (default: half the context).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Windows per forward pass.")] = 8,
    add_bos: Annotated[
        bool, typer.Option("--add-bos", help="Prepend BOS/EOS so the first token is scored too.")
    ] = False,
    device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as one JSON object.")] = False,
) -> None:
    """Sliding-window perplexity, bits per character and bits per byte of a text file."""
    from llmlab.recipes.evaluate import perplexity

    perplexity(checkpoint, file, stride=stride, batch_size=batch_size, add_bos=add_bos, device=device, as_json=as_json)


eval_human.register(eval_app)


def register(app: typer.Typer) -> None:
    """Attach the `eval` command group to the root app."""
    app.add_typer(eval_app, name="eval")


eval_metrics.register(eval_app)
