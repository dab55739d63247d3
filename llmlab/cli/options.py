"""Command-line options shared by several commands (one definition, so their names and help stay in step)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOption = Annotated[
    Path | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="A .gguf file, checkpoint/run folder, Hugging Face folder, or adapter / finetune run folder "
        "(default: SmolLM2-135M-Instruct).",
    ),
]
MinPOption = Annotated[
    float | None,
    typer.Option("--min-p", min=0.0, max=1.0, help="Drop tokens less likely than min-p x the top token."),
]
RepetitionPenaltyOption = Annotated[
    float | None,
    typer.Option("--repetition-penalty", min=0.0, help="CTRL penalty on every token seen (1.0 = off; try 1.2)."),
]
FrequencyPenaltyOption = Annotated[
    float, typer.Option("--frequency-penalty", help="OpenAI penalty per occurrence in the generated text.")
]
PresencePenaltyOption = Annotated[
    float, typer.Option("--presence-penalty", help="OpenAI penalty once per token in the generated text.")
]
