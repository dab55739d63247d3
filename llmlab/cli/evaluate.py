"""`llmlab eval ...`: evaluate a checkpoint (`llmlab eval perplexity`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

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
    from llmlab.eval import evaluate_perplexity
    from llmlab.hub import load_model_and_tokenizer

    if not file.is_file():
        raise FileNotFoundError(f"text file not found: {file}; pass a held-out UTF-8 text file with --file")
    text = file.read_text(encoding="utf-8")
    model, tokenizer = load_model_and_tokenizer(checkpoint, device=device)
    if stride is not None and stride > model.config.block_size:
        raise ValueError(f"--stride {stride} is larger than the model's context {model.config.block_size}; lower it")
    result = evaluate_perplexity(model, tokenizer, text, stride=stride, batch_size=batch_size, add_bos=add_bos)
    if as_json:
        print(json.dumps(result))
        return
    print(f"file            {file} ({result['characters']:,} characters, {result['bytes']:,} bytes scored)")
    print(f"context/stride  {result['block_size']} / {result['stride']} tokens")
    print(f"tokens scored   {result['tokens_scored']:,}")
    print(f"loss            {result['loss']:.4f} nats/token")
    print(f"perplexity      {result['perplexity']:.3f}")
    print(f"bits per char   {result['bits_per_char']:.4f}")
    print(f"bits per byte   {result['bits_per_byte']:.4f}")


def register(app: typer.Typer) -> None:
    """Attach the `eval` command group to the root app."""
    app.add_typer(eval_app, name="eval")
