"""`llmlab tokenizer train|encode`: train a tokenizer on text files, folders, JSONL or a built-in corpus."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import overwrite_option

tokenizer_app = typer.Typer(
    name="tokenizer",
    help="Train and inspect tokenizers (byte-level BPE, WordPiece, Unigram, char).",
    no_args_is_help=True,
)


@tokenizer_app.command("train")
def train(
    sources: Annotated[
        list[str], typer.Argument(help="Text files, folders (recursive), .jsonl files, or shakespeare/tinyshakespeare.")
    ],
    kind: Annotated[str, typer.Option("--kind", "-k", help="bpe | wordpiece | unigram | char")] = "bpe",
    vocab_size: Annotated[int, typer.Option("--vocab-size", "-v", help="Target size incl. special tokens.")] = 4096,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder (or .json path); default tokenizers/<kind>.")
    ] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="JSONL field that holds the text.")] = "text",
    min_frequency: Annotated[int, typer.Option(help="BPE/WordPiece: minimum count of a merge.")] = 0,
    bos: Annotated[str, typer.Option(help='Beginning-of-sequence token ("" = none).')] = "<|bos|>",
    eos: Annotated[str, typer.Option(help='End-of-text token, put between documents ("" = none).')] = "<|endoftext|>",
    pad: Annotated[str, typer.Option(help='Padding token ("" = none).')] = "<|pad|>",
    unk: Annotated[str, typer.Option(help='Unknown token ("" = none).')] = "<|unk|>",
    mask: Annotated[str, typer.Option(help='Mask token ("" = none).')] = "",
    encoding: Annotated[str, typer.Option("--encoding", help="Encoding of the text files.")] = "utf-8",
    overwrite: overwrite_option("Replace --out if an earlier llmlab run made it.") = False,
) -> None:
    """Train a tokenizer and save it as tokenizer.json (+ tokenizer_config.json naming the special tokens)."""
    from rich.console import Console

    from llmlab.recipes.corpus import train_tokenizer_to

    specials = {"bos": bos, "eos": eos, "pad": pad, "unk": unk, "mask": mask}
    target = out if out is not None else Path("tokenizers") / kind
    tok, path = train_tokenizer_to(
        kind, list(sources), vocab_size, specials, target, text_field=text_field, min_frequency=min_frequency,
        encoding=encoding, overwrite=overwrite,
    )  # fmt: skip
    console = Console()
    ids = {r: getattr(tok, f"{r}_id") for r in ("bos", "eos", "pad", "unk", "mask")}
    console.print(f"[bold]{kind}[/] tokenizer with {tok.vocab_size} ids saved to {path}")
    console.print("special token ids: " + ", ".join(f"{r}={i}" for r, i in ids.items() if i is not None))


@tokenizer_app.command("encode")
def encode(
    text: Annotated[str, typer.Argument(help="Text to tokenize.")],
    tokenizer: Annotated[Path, typer.Option("--tokenizer", "-t", help="tokenizer.json or its folder.")],
) -> None:
    """Show the tokens and ids of a text, and check that decoding gives it back."""
    from rich.console import Console

    from llmlab.recipes.corpus import encode_text

    result = encode_text(text, tokenizer)
    console = Console()
    console.print(f"{len(result['ids'])} tokens: {result['tokens']}", markup=False)
    console.print(f"ids: {result['ids']}", markup=False)
    console.print(f"round trip exact: {result['round_trip']}")


def register(app: typer.Typer) -> None:
    """Attach `llmlab tokenizer ...` to the root app."""
    app.add_typer(tokenizer_app, name="tokenizer")
