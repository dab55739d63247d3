"""`llmlab eval metrics`: score a file of hypotheses against one or more reference files (sacrebleu-CLI-like).

Each file holds one example per line (UTF-8, `\\n` line ends; a trailing newline is optional); line i of every
reference file is a reference of hypothesis line i, so several `--ref` files give several references per
example (an empty line means "no reference there", as in sacrebleu, unless it is empty in every file). Metrics
(`llmlab.eval.metrics`): `bleu`, `chrf` (corpus level, 0-100, sacrebleu), `rouge` (mean ROUGE-1/2/L
F-measure, 0-1, rouge-score), `em` and `f1` (SQuAD exact match / token F1 with the best reference, means over
the lines with their standard errors). `--lang zh` switches to sacrebleu's zh tokenizer for BLEU and to
character-level ROUGE, exact match and F1.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmlab.eval.metrics import LANGS, bleu, chrf, exact_match, mean_stderr, rouge, token_f1
from llmlab.io import json_safe

METRIC_NAMES = ("bleu", "chrf", "rouge", "em", "f1")
DEFAULT_METRICS = ",".join(METRIC_NAMES)


def parse_metric_list(text: str) -> list[str]:
    """`"bleu,chrf"` -> ["bleu", "chrf"]; ValueError naming an unknown or missing metric."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--metric is empty; pass a comma-separated list from {DEFAULT_METRICS}")
    for name in names:
        if name not in METRIC_NAMES:
            raise ValueError(f"unknown metric {name!r} in --metric; choose from {DEFAULT_METRICS}")
    return list(dict.fromkeys(names))


def read_lines(path: Path, flag: str) -> list[str]:
    """The lines of a UTF-8 file (without line ends); FileNotFoundError/ValueError naming it."""
    if not path.is_file():
        raise FileNotFoundError(f"{flag} file not found: {path}; pass a UTF-8 text file with one example per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{flag} file {path} is not UTF-8 text (byte {e.start}); convert it to UTF-8") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_pairs(hyp: Path, refs: Sequence[Path]) -> tuple[list[str], list[list[str]]]:
    """(hypotheses, references per hypothesis) from the files; ValueError when the line counts differ."""
    if not refs:
        raise ValueError("no reference file; pass at least one --ref FILE")
    hypotheses = read_lines(hyp, "--hyp")
    if not hypotheses:
        raise ValueError(f"--hyp file {hyp} is empty; pass one hypothesis per line")
    columns = []
    for ref in refs:
        lines = read_lines(ref, "--ref")
        if len(lines) != len(hypotheses):
            raise ValueError(
                f"--ref file {ref} has {len(lines)} lines but --hyp file {hyp} has {len(hypotheses)}; "
                "pass one line per example in each file"
            )
        columns.append(lines)
    # an empty line means "no reference here" (sacrebleu); a line empty in every file is one empty reference
    references = [[line for line in row if line] or [""] for row in zip(*columns, strict=True)]
    return hypotheses, references


def score_lines(hypotheses: list[str], references: list[list[str]], metrics: Sequence[str], lang: str) -> dict:
    """The requested metrics of hypotheses against their references (see the module docstring)."""
    result: dict[str, Any] = {}
    if "bleu" in metrics:
        result["bleu"] = bleu(hypotheses, references, lang=lang)
    if "chrf" in metrics:
        result["chrf"] = chrf(hypotheses, references, lang=lang)
    if "rouge" in metrics:
        result.update(rouge(hypotheses, references, lang=lang))
    for name, key, fn in (("em", "exact_match", exact_match), ("f1", "f1", token_f1)):
        if name in metrics:
            values = [fn(h, refs, lang=lang) for h, refs in zip(hypotheses, references, strict=True)]
            result[key], result[f"{key}_stderr"] = mean_stderr(values)
    return result


def _print_table(result: dict, hyp: Path, n_refs: int, lang: str) -> None:
    print(f"hypotheses  {hyp} ({result['n']} lines, {n_refs} reference file(s), lang {lang})")
    labels = {"bleu": "BLEU", "chrf": "chrF2", "rouge1": "ROUGE-1 F", "rouge2": "ROUGE-2 F", "rougeL": "ROUGE-L F"}
    for key, label in labels.items():
        if key in result:
            print(f"{label:<11} {result[key]:.2f}" if key in ("bleu", "chrf") else f"{label:<11} {result[key]:.4f}")
    for key, label in (("exact_match", "exact match"), ("f1", "token F1")):
        if key in result:
            stderr = result[key + "_stderr"]  # nan for a single example
            print(f"{label:<11} {result[key]:.4f} ± {'n/a' if math.isnan(stderr) else f'{stderr:.4f}'}")


def eval_metrics(
    hyp: Path, refs: Sequence[Path], *, metrics: str = DEFAULT_METRICS, lang: str = "en", as_json: bool = False
) -> dict[str, Any]:
    """Score `hyp` against `refs` with `metrics` (comma-separated), print a table or JSON; returns the figures."""
    names = parse_metric_list(metrics)
    if lang not in LANGS:
        raise ValueError(f"unknown --lang {lang!r}; choose one of {', '.join(LANGS)}")
    hypotheses, references = read_pairs(hyp, refs)
    result = {**score_lines(hypotheses, references, names, lang), "n": len(hypotheses), "lang": lang}
    if as_json:
        print(json.dumps(json_safe(result)))
    else:
        _print_table(result, hyp, len(refs), lang)
    return result
