"""`llmlab eval metrics`: BLEU, chrF, ROUGE, exact match and token F1 of a hypothesis file against reference files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def metrics_cmd(
    hyp: Annotated[Path, typer.Option("--hyp", help="Hypotheses: one example per line (UTF-8).")],
    ref: Annotated[
        list[Path], typer.Option("--ref", help="References, line-aligned with --hyp; repeat for more references.")
    ],
    metric: Annotated[
        str, typer.Option("--metric", help="Comma-separated: bleu, chrf, rouge, em, f1.")
    ] = "bleu,chrf,rouge,em,f1",
    lang: Annotated[
        str, typer.Option("--lang", help="en, or zh: BLEU zh tokenizer; ROUGE/EM/F1 by characters.")
    ] = "en",
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as one JSON object.")] = False,
) -> None:
    """Score a file of hypotheses against one or more reference files (one example per line)."""
    from llmlab.recipes.eval_metrics import eval_metrics

    eval_metrics(hyp, ref, metrics=metric, lang=lang, as_json=as_json)


def register(eval_app: typer.Typer) -> None:
    """Attach `metrics` to the `llmlab eval` group."""
    eval_app.command("metrics")(metrics_cmd)
