"""`llmlab eval ...`: perplexity, harness tasks (`run`), text metrics (`metrics`), human A/B (`human`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli import eval_human, eval_metrics
from llmlab.cli.options import KeepQuantizedOption

eval_app = typer.Typer(
    name="eval",
    help="Evaluate models: harness tasks, text metrics, human A/B studies, perplexity.",
    no_args_is_help=True,
)


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
    keep_quantized: KeepQuantizedOption = False,
) -> None:
    """Sliding-window perplexity, bits per character and bits per byte of a text file."""
    from llmlab.recipes.evaluate import perplexity

    perplexity(
        checkpoint,
        file,
        stride=stride,
        batch_size=batch_size,
        add_bos=add_bos,
        device=device,
        as_json=as_json,
        keep_quantized=keep_quantized,
    )


@eval_app.command("run")
def run_cmd(
    tasks: Annotated[
        str, typer.Option("--tasks", "-t", help="Comma-separated built-in task names (or all) and/or task YAML paths.")
    ],
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model path (default: the packaged SmolLM2); repeat with --ensemble."),
    ] = None,
    num_fewshot: Annotated[
        int | None, typer.Option("--num-fewshot", min=0, help="Few-shot examples per prompt (default: the task's).")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate the first N documents.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Sequences per forward pass.")] = 16,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Folder for results.json and samples_<task>.jsonl.")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier llmlab --output folder.")] = False,
    ensemble: Annotated[
        str | None, typer.Option("--ensemble", help="Combine several --model: mean (probabilities) or vote.")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="torch device, e.g. cpu or cuda.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as one JSON object.")] = False,
) -> None:
    """Evaluate a model on harness tasks (zero- or few-shot): a table of metrics with standard errors."""
    from llmlab.recipes.eval_tasks import run_tasks

    run_tasks(
        tasks,
        list(model) if model else None,
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=batch_size,
        output=output,
        overwrite=overwrite,
        device=device,
        ensemble=ensemble,
        as_json=as_json,
    )


def register(app: typer.Typer) -> None:
    """Attach the `eval` command group to the root app."""
    app.add_typer(eval_app, name="eval")


eval_metrics.register(eval_app)
eval_human.register(eval_app)
