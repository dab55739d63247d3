"""`llmlab embed build|search`: parse the options and hand them to `llmlab.recipes.embed`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from llmlab.cli.options import DeviceOption, overwrite_option

embed_app = typer.Typer(
    name="embed",
    help="Sentence embeddings: build a vector index from a text/JSONL file, search it by cosine similarity.",
    no_args_is_help=True,
)
EncoderOption = Annotated[
    Path | None,
    typer.Option("--model", "-m", help="BERT-family encoder folder (default: the packaged all-MiniLM-L6-v2)."),
]


@embed_app.command("build")
def build(
    input_file: Annotated[
        Path, typer.Option("--input", "-i", help=".txt (one text per line) or .jsonl (one record per line) file.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Index folder to create.")],
    model: EncoderOption = None,
    text_field: Annotated[str, typer.Option("--field", help="JSONL field holding the text.")] = "text",
    id_field: Annotated[
        str | None, typer.Option("--id-field", help="JSONL field holding an id (default: the line number).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")] = 64,
    pooling: Annotated[str, typer.Option("--pooling", help="mean | cls | max")] = "mean",
    no_normalize: Annotated[
        bool, typer.Option("--no-normalize", help="Keep raw vectors (no L2 normalisation).")
    ] = False,
    max_length: Annotated[int, typer.Option("--max-length", help="Truncate texts to this many tokens.")] = 256,
    overwrite: overwrite_option("Replace --out if an earlier llmlab embed made it.") = False,
    device: DeviceOption = "cpu",
) -> None:
    """Embed every text of --input and save the vectors, texts and settings as an index folder."""
    from llmlab.recipes.embed import EmbedRequest, build_index

    request = EmbedRequest(
        input_file,
        out,
        model,
        text_field,
        id_field,
        batch_size,
        pooling,
        not no_normalize,
        max_length,
        overwrite,
        device,
    )
    report = build_index(request, say=lambda line: typer.echo(line, err=True))
    typer.echo(f"wrote {report.count} vectors of {report.dim} dimensions ({report.model}) to {report.out}")


@embed_app.command("search")
def search(
    index: Annotated[Path, typer.Option("--index", help="Index folder made by `llmlab embed build`.")],
    query: Annotated[list[str], typer.Option("--query", "-q", help="Query text (repeat for several).")],
    k: Annotated[int, typer.Option("-k", help="Results per query.")] = 5,
    model: EncoderOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per query.")] = False,
    device: DeviceOption = "cpu",
) -> None:
    """Print the k texts of the index closest to each query (cosine similarity), best first."""
    from llmlab.recipes.embed import search_index

    results = search_index(index, list(query), k, model, device)
    for text, hits in zip(query, results, strict=True):
        if as_json:
            rows = [{"rank": h.rank, "score": round(h.score, 6), "id": h.id, "text": h.text} for h in hits]
            typer.echo(json.dumps({"query": text, "results": rows}, ensure_ascii=False))
            continue
        typer.echo(f"query: {text}")
        for h in hits:
            typer.echo(f"  {h.rank}. {h.score:.4f}  [{h.id}] {h.text}")


def register(app: typer.Typer) -> None:
    """Attach `llmlab embed` to the root app."""
    app.add_typer(embed_app)
