"""`llmlab data prepare` and `llmlab tokenizer train/encode` as library calls (the CLI only parses and dispatches)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from llmlab.config import load_config
from llmlab.data import PrepareConfig, PrepareReport, prepare_corpus, train_tokenizer
from llmlab.data.sources import resolve_sources
from llmlab.tokenizers import Tokenizer, check_training_args, load_tokenizer
from llmlab.tokenizers.core import check_tokenizer_out, save_tokenizer_output


def prepare_data(
    config: Path | None,
    overrides: Sequence[str],
    flags: Mapping[str, Any],
    *,
    no_clean: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> PrepareReport:
    """Prepare a corpus from a YAML config, dotted overrides and command-line flags (flags win).

    `flags` maps dotted config keys (``out_dir``, ``tokenizer.vocab_size``, ``split.mode`` ...) to values; None
    values are ignored. They go through `load_config` as overrides, so they are type-checked like any override.
    """
    extra = [f"{key}={_override_value(value)}" for key, value in flags.items() if value is not None]
    cfg = load_config(PrepareConfig, config, [*overrides, *extra])
    if no_clean:
        cfg.clean.disable_all()
    return prepare_corpus(cfg, log=log, overwrite=overwrite)


def _override_value(value: Any) -> str:
    import json

    if isinstance(value, (list, tuple)):
        return "[" + ",".join(json.dumps(str(v)) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def train_tokenizer_to(
    kind: str,
    sources: Sequence[str],
    vocab_size: int,
    specials: Mapping[str, str],
    out: Path,
    *,
    text_field: str = "text",
    min_frequency: int = 2,
    encoding: str = "utf-8",
    overwrite: bool = False,
) -> tuple[Tokenizer, Path]:
    """Check every argument and the output folder, train a tokenizer on `sources`, save it into `out`."""
    check_training_args(kind, vocab_size, min_frequency)
    resolve_sources(list(sources))  # a missing source is named before the output folder is looked at
    check_tokenizer_out(out, overwrite=overwrite, sources=[s for s in sources if Path(s).exists()])
    tok = train_tokenizer(
        kind, list(sources), vocab_size, dict(specials), text_field=text_field, min_frequency=min_frequency,
        encoding=encoding,
    )  # fmt: skip
    return tok, save_tokenizer_output(tok, out)


def encode_text(text: str, tokenizer: Path) -> dict[str, Any]:
    """Tokens, ids and whether decoding gives `text` back, for `llmlab tokenizer encode`."""
    tok = load_tokenizer(tokenizer)
    ids = tok.encode(text)
    return {"tokens": tok.tokens(text), "ids": ids, "round_trip": tok.decode(ids) == text}


def write_arithmetic(
    out: Path, n_train: int, n_test: int, seed: int, lang: str, style: str, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """`llmlab data arithmetic`: 2-digit addition/subtraction word problems (`llmlab.data.arithmetic`) as a new
    folder with ``train.jsonl`` and ``test.jsonl`` (GRPO's verifiable task)."""
    from llmlab.data.arithmetic import write_arithmetic_splits

    return write_arithmetic_splits(out, n_train, n_test, seed, lang, style, overwrite=overwrite)
