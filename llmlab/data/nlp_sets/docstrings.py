"""Code -> docstring pairs from the Python standard library's own source: a real (non-synthetic) seq2seq task.

Every function and method with a docstring in the running interpreter's standard library
(`sysconfig.get_paths()["stdlib"]`, without `test`/`tests`/`idle_test` folders and `site-packages`) gives one
pair: the function's source with its docstring removed (dedented, trailing spaces and blank-line runs removed,
cut to `max_source_chars`) -> the first sentence of the docstring's first paragraph. Pairs whose target is
trivial (fewer than `min_target_words` words, or longer than `max_target_chars`) or whose body is only the
docstring are dropped, and each target is kept once (its first occurrence in module order), so no target is
shared between splits; docstrings whose summary is a doctest (`>>>`) are dropped. The split is BY MODULE: a
seeded shuffle of the module list, then each whole module goes to test, else val, if it still fits in that
split's share (`held_out_fraction` of the pairs), else to train; a module larger than 15% of that share (tkinter,
inspect ...) always goes to train — so val/test measure many held-out modules and none dominates them.
The data depends on the Python version (recorded in `stdlib_info()`); the source is the PSF-licensed stdlib.
"""

from __future__ import annotations

import ast
import functools
import inspect
import random
import re
import sys
import sysconfig
import textwrap
from pathlib import Path
from typing import Any

from llmlab.data.nlp_sets._common import Splits, check_sizes

SKIP_DIRS = frozenset({"test", "tests", "idle_test", "site-packages", "__pycache__", "dist-packages"})
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")


def stdlib_dir() -> Path:
    """The running interpreter's standard-library folder."""
    return Path(sysconfig.get_paths()["stdlib"])


def stdlib_info() -> dict[str, str]:
    """Where the source comes from: the Python version and the stdlib folder."""
    return {"python": sys.version.split()[0], "implementation": sys.implementation.name, "stdlib": str(stdlib_dir())}


def module_files(root: Path) -> list[tuple[str, Path]]:
    """(dotted module name, path) of every .py file under `root`, outside the skipped folders, sorted by name."""
    out = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or not part.isidentifier() for part in rel.parts[:-1]):
            continue
        parts = list(rel.with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts and all(p.isidentifier() for p in parts):
            out.append((".".join(parts), path))
    return sorted(out)


def summary_line(docstring: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line."""
    paragraph = inspect.cleandoc(docstring).split("\n\n", 1)[0]
    line = " ".join(paragraph.split())
    return _SENTENCE_END.split(line, 1)[0].strip()


def function_source(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> str | None:
    """The source of `node` without its docstring, normalised; None when nothing but the docstring is left."""
    doc = node.body[0]
    if len(node.body) == 1:
        return None
    start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
    assert node.end_lineno is not None and doc.end_lineno is not None
    if doc.lineno == node.lineno or doc.end_lineno == node.body[1].lineno:
        return None  # a one-liner `def f(): "doc"; ...`: the docstring does not own its lines
    kept = lines[start : doc.lineno - 1] + lines[doc.end_lineno : node.end_lineno]
    code = textwrap.dedent("\n".join(line.rstrip() for line in kept))
    return re.sub(r"\n{3,}", "\n\n", code).strip("\n")


def module_pairs(name: str, path: Path, max_source_chars: int) -> list[dict[str, Any]]:
    """Every (function without docstring, docstring summary) pair of one module, in source order."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    lines = text.splitlines()
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        doc = ast.get_docstring(node, clean=False)
        if not doc:
            continue
        source = function_source(node, lines)
        if source:
            out.append({"source": source[:max_source_chars], "target": summary_line(doc), "module": name,
                        "name": node.name, "line": node.lineno})  # fmt: skip
    return sorted(out, key=lambda r: r["line"])


@functools.lru_cache(maxsize=4)
def _all_pairs(root: str, max_source_chars: int) -> tuple[dict[str, Any], ...]:
    rows: list[dict[str, Any]] = []
    for name, path in module_files(Path(root)):
        rows.extend(module_pairs(name, path, max_source_chars))
    return tuple(rows)


def _keep(target: str, min_target_words: int, max_target_chars: int) -> bool:
    words = target.split()
    if ">>>" in target or not any(c.isalpha() for c in target):
        return False  # a doctest, not a summary
    return len(words) >= min_target_words and len(target) <= max_target_chars


def build_docstrings(
    train: int | None = None,
    val: int | None = None,
    test: int | None = None,
    *,
    seed: int = 0,
    held_out_fraction: float = 0.1,
    max_source_chars: int = 1000,
    min_target_words: int = 3,
    max_target_chars: int = 200,
    root: str | Path | None = None,
) -> Splits:
    """{"train", "val", "test"} lists of {"source", "target", "module", "name", "line"}; val and test hold whole
    modules that train never sees. `train`/`val`/`test` cap each split (a seeded sample; None keeps all).

    Raises:
        ValueError: a negative size or a held-out fraction outside (0, 0.5).
    """
    check_sizes(train=train, val=val, test=test)
    if not 0 < held_out_fraction < 0.5:
        raise ValueError(f"held_out_fraction must be in (0, 0.5), got {held_out_fraction}")
    seen: set[str] = set()
    by_module: dict[str, list[dict[str, Any]]] = {}
    for row in _all_pairs(str(root or stdlib_dir()), max_source_chars):
        key = row["target"].lower()
        if key in seen or not _keep(row["target"], min_target_words, max_target_chars):
            continue
        seen.add(key)
        by_module.setdefault(row["module"], []).append(dict(row))
    modules = sorted(by_module)
    random.Random(seed).shuffle(modules)
    total = sum(len(v) for v in by_module.values())
    splits: Splits = {"test": [], "val": [], "train": []}
    target = held_out_fraction * total
    for module in modules:  # a module is held out only if it fits, so no giant module dominates val/test
        pairs = by_module[module]
        fits = len(pairs) <= 0.15 * target
        split = next((s for s in ("test", "val") if fits and len(splits[s]) + len(pairs) <= target), "train")
        splits[split].extend(pairs)
    rng = random.Random(seed + 1)
    for split, cap in (("train", train), ("val", val), ("test", test)):
        rng.shuffle(splits[split])
        if cap is not None:
            splits[split] = splits[split][:cap]
    return {s: splits[s] for s in ("train", "val", "test")}
