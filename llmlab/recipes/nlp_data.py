"""`llmlab data <set>` (docstrings, ner, qa, relation, cedict, sentiment): build one of the labelled sets of
`llmlab.data.nlp_sets` and write it as a new folder with ``train.jsonl``, ``val.jsonl``, ``test.jsonl`` and a
``README.md`` (how it was made, source, licence, counts), under the output-folder policy (a new folder, or
``--overwrite`` of an earlier llmlab output; never a foreign folder)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmlab.data.nlp_sets import NLP_SETS, SPLITS, NlpSet, Splits
from llmlab.io import atomic_write_text, building_output, check_output_dir


def nlp_set(name: str) -> NlpSet:
    """The set called `name`; a one-line ValueError listing the sets otherwise."""
    if name not in NLP_SETS:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(NLP_SETS)}")
    return NLP_SETS[name]


def build_kwargs(spec: NlpSet, lang: str | None, sizes: dict[str, int | None]) -> dict[str, Any]:
    """The builder's keyword arguments for `lang` and the split sizes, checked (one-line ValueError)."""
    kwargs: dict[str, Any] = dict(sizes)
    if spec.langs:
        lang = lang or spec.default_lang
        if lang not in spec.langs:
            raise ValueError(f"--lang of `data {spec.name}` must be one of {', '.join(spec.langs)}, got {lang!r}")
        kwargs["lang"] = lang
    elif lang is not None:
        raise ValueError(f"`data {spec.name}` has no --lang option (it is not per language); leave it out")
    for split, value in sizes.items():
        if value is not None and value < 0:
            raise ValueError(f"--{split} must be >= 0, got {value}")
    return kwargs


def render_readme(spec: NlpSet, splits: Splits, kwargs: dict[str, Any], seed: int) -> str:
    """README.md of a written set: what it is, the command, source, licence, counts and how it was made."""
    args = [f"--{k} {v}" for k, v in kwargs.items() if v is not None]
    command = f"llmlab data {spec.name} --out DIR --seed {seed} " + " ".join(args)
    kind = ("**Generated from templates** (synthetic text, not natural data)." if spec.generated
            else "Real (non-synthetic) data.")  # fmt: skip
    lines = [f"# `{spec.name}` ({kwargs.get('lang', 'all')})", "", kind, "",
             f"Made with `{command.strip()}` (llmlab.data.nlp_sets; deterministic for a given seed).", "",
             f"- source: {spec.source}", f"- licence: {spec.licence}", f"- record: `{spec.record}`"]  # fmt: skip
    lines += [f"- {k}: {v}" for k, v in spec.info().items()]
    lines += ["", "| split | records |", "|---|---|", *[f"| {s} | {len(splits[s])} |" for s in SPLITS], ""]
    lines += ["## How it was made", ""]
    lines += [line for module in spec.modules for line in ((module.__doc__ or "").strip(), "")]
    return "\n".join(lines)


def write_nlp_set(
    name: str,
    out: str | Path,
    *,
    seed: int = 0,
    train: int | None = None,
    val: int | None = None,
    test: int | None = None,
    lang: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Build set `name` and publish it as the folder `out`; returns the written file paths.

    Raises:
        ValueError: an unknown set or language, a negative size, or an `out` the output policy refuses — all
            before anything is built or written.
    """
    spec = nlp_set(name)
    kwargs = build_kwargs(spec, lang, {"train": train, "val": val, "test": test})
    out = Path(out)
    check_output_dir(out, overwrite=overwrite)
    splits = spec.build(**kwargs, seed=seed)
    with building_output(out, f"data {name}") as tmp:
        for split in SPLITS:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in splits[split])
            atomic_write_text(tmp / f"{split}.jsonl", text)
        atomic_write_text(tmp / "README.md", render_readme(spec, splits, kwargs, seed))
    return [out / f"{s}.jsonl" for s in SPLITS] + [out / "README.md"]
