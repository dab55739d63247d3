"""`llmlab data prepare` (read, clean, split, tokenize and pack a corpus into token shards) and `llmlab data
arithmetic` (word problems with exact answers, for GRPO)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option

data_app = typer.Typer(
    name="data",
    help="Prepare corpora (clean, split, tokenize, pack into shards); write task data (arithmetic).",
    no_args_is_help=True,
)


def _print_report(report) -> None:  # report: llmlab.data.PrepareReport
    from rich.console import Console
    from rich.table import Table

    table = Table(title="cleaning report")
    for col, justify in (("step", "left"), ("result", "left"), ("details", "left"), ("s", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for s in report.steps:
        if not s.enabled:
            table.add_row(s.name, "[dim]off[/]", "", "")
            continue
        if s.name == "normalize":
            result = f"{s.chars_changed:,} of {s.units_in:,} chars changed"
        elif s.name == "pii":
            result = f"{s.units_in:,} replacements"
        else:
            result = f"removed {s.removed:,} of {s.units_in:,} {s.unit} ({s.chars_removed:,} chars)"
        details = ", ".join(f"{k}={v}" for k, v in s.details.items() if v not in (0, {}, None))
        table.add_row(s.name, result, details, f"{s.seconds:.1f}")
    console = Console()
    console.print(table)
    console.print(
        f"documents {report.documents_in:,} -> {report.documents_out:,}; chars {report.chars_in:,} -> "
        f"{report.chars_out:,}; split {report.split_mode}: {report.train_documents} train / "
        f"{report.val_documents} val documents"
    )
    console.print(
        f"{report.tokenizer_kind} tokenizer, vocab {report.vocab_size}; {report.train_tokens:,} train + "
        f"{report.val_tokens:,} val tokens ({report.dtype}) in [bold]{report.out_dir}[/] "
        f"({report.seconds.get('total', 0):.1f} s)"
    )


@data_app.command("prepare")
def prepare(
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Config overrides key=value, e.g. clean.near_dedup.threshold=0.9")
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option("--source", "-s", help="File, folder, .jsonl, or shakespeare/tinyshakespeare (repeatable)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default data/<source>).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML PrepareConfig.")] = None,
    tokenizer_kind: Annotated[str | None, typer.Option("--tokenizer-kind", help="bpe|wordpiece|unigram|char")] = None,
    vocab_size: Annotated[int | None, typer.Option("--vocab-size", help="Vocabulary size to train.")] = None,
    tokenizer: Annotated[Path | None, typer.Option("--tokenizer", help="Use this tokenizer.json instead.")] = None,
    text_field: Annotated[str | None, typer.Option("--text-field", help="JSONL field with the text.")] = None,
    documents: Annotated[str | None, typer.Option("--documents", help="Text files as: file|paragraph|line")] = None,
    split_mode: Annotated[str | None, typer.Option("--split-mode", help="auto|tail|random")] = None,
    val_fraction: Annotated[float | None, typer.Option("--val-fraction", help="Share of text for val.")] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="auto|uint16|uint32")] = None,
    encoding: Annotated[str | None, typer.Option("--encoding", help="Encoding of the source files (utf-8).")] = None,
    no_clean: Annotated[bool, typer.Option("--no-clean", help="Switch every cleaning step off.")] = False,
    overwrite: overwrite_option("Replace --out if an earlier llmlab run made it.") = False,
) -> None:
    """Prepare a corpus. Flags take precedence over --config and key=value overrides."""
    from llmlab.recipes.corpus import prepare_data

    flags = {
        "out_dir": str(out) if out is not None else None,
        "sources": list(source) if source else None,
        "text_field": text_field,
        "documents": documents,
        "dtype": dtype,
        "encoding": encoding,
        "tokenizer.kind": tokenizer_kind,
        "tokenizer.vocab_size": vocab_size,
        "tokenizer.path": str(tokenizer) if tokenizer is not None else None,
        "split.mode": split_mode,
        "split.val_fraction": val_fraction,
    }
    report = prepare_data(
        config, list(overrides or []), flags, no_clean=no_clean, overwrite=overwrite, log=lambda msg: typer.echo(msg)
    )
    _print_report(report)


@data_app.command("arithmetic")
def arithmetic_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="New folder for train.jsonl and test.jsonl.")],
    train: Annotated[int, typer.Option("--train", help="Training problems.")] = 2000,
    test: Annotated[int, typer.Option("--test", help="Held-out problems (none shared with training).")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the problems and their order.")] = 0,
    lang: Annotated[str, typer.Option("--lang", help="en | zh")] = "en",
    style: Annotated[
        str, typer.Option("--style", help="instruct (chat) | fewshot (two solved problems) | equation (shows a+b=c)")
    ] = "equation",
    overwrite: overwrite_option("Replace an earlier llmlab output at --out (never a foreign folder).") = False,
) -> None:
    """Write 2-digit addition/subtraction word problems with exact answers (a GRPO task: reward.functions)."""
    from llmlab.recipes.corpus import write_arithmetic

    for path in write_arithmetic(out, train, test, seed, lang, style, overwrite=overwrite):
        typer.echo(path)


def register(app: typer.Typer) -> None:
    """Attach `llmlab data ...` to the root app."""
    app.add_typer(data_app, name="data")
