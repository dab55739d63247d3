"""Document quality heuristics in the style of Gopher's MassiveText filters (Rae et al. 2021,
https://arxiv.org/abs/2112.11446, appendix A): cheap rules that remove boiler-plate, lists of symbols,
and text that repeats itself.

"Words" are whitespace-separated tokens, except that every CJK character (Chinese, Japanese kana,
Korean Hangul) counts as a word of its own, so the rules work for Chinese without a word segmenter.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

from llmlab.data.pii import PLACEHOLDERS

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_WORD = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
# ASCII symbols that are not sentence punctuation; other characters count when Unicode calls them symbols.
_ASCII_SYMBOLS = frozenset("#$%&*+/<=>@\\^_`|~{}[]")


def words(text: str) -> list[str]:
    """Whitespace-separated words, with each CJK character as a word."""
    return _WORD.findall(text)


def symbol_ratio(text: str) -> float:
    """Fraction of non-space characters that are symbols (`#`, `@`, `|`, `{`, math and currency signs,
    emoji, box drawing, ...) rather than letters, digits or sentence punctuation. The angle brackets of PII
    placeholders (`<EMAIL>`, `<PHONE>`, ...) do not count: scrubbed text must not look like junk."""
    for placeholder in PLACEHOLDERS.values():
        text = text.replace(placeholder, placeholder[1:-1])
    chars = [c for c in text if not c.isspace()]
    if not chars:
        return 0.0
    n = sum(1 for c in chars if c in _ASCII_SYMBOLS or (ord(c) > 127 and unicodedata.category(c)[0] == "S"))
    return n / len(chars)


def duplicate_line_fraction(text: str) -> float:
    """Fraction of non-empty lines that repeat an earlier line (Gopher: remove above 0.30)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return 0.0
    return 1.0 - len(set(lines)) / len(lines)


def duplicate_ngram_fraction(text: str, n: int = 5) -> float:
    """Fraction of word characters inside word n-grams that occur more than once.

    Gopher's "duplicate n-gram character fraction" (remove above 0.15 for n=5 ... 0.10 for n=10): each
    word is counted once even when several repeated n-grams cover it.
    """
    ws = words(text)
    if len(ws) < n:
        return 0.0
    grams = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
    counts = Counter(grams)
    covered = bytearray(len(ws))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            covered[i : i + n] = b"\x01" * n
    total = sum(len(w) for w in ws)
    return sum(len(w) for w, c in zip(ws, covered, strict=True) if c) / total


def quality_issue(
    text: str,
    *,
    min_chars: int = 0,
    max_chars: int = 0,
    max_symbol_ratio: float = 1.0,
    max_duplicate_line_fraction: float = 1.0,
    max_duplicate_ngram_fraction: float = 1.0,
    ngram: int = 5,
) -> str | None:
    """The name of the first rule `text` breaks, or None if it passes them all (a bound of 0 or 1 = off).

    Rules, cheapest first: `too_short`, `too_long` (characters, outer whitespace stripped),
    `symbols`, `duplicate_lines`, `duplicate_ngrams`.
    """
    n_chars = len(text.strip())
    if n_chars < min_chars:
        return "too_short"
    if max_chars and n_chars > max_chars:
        return "too_long"
    if max_symbol_ratio < 1.0 and symbol_ratio(text) > max_symbol_ratio:
        return "symbols"
    if max_duplicate_line_fraction < 1.0 and duplicate_line_fraction(text) > max_duplicate_line_fraction:
        return "duplicate_lines"
    if max_duplicate_ngram_fraction < 1.0 and duplicate_ngram_fraction(text, ngram) > max_duplicate_ngram_fraction:
        return "duplicate_ngrams"
    return None
