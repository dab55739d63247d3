"""Language handling shared by the text and QA metrics: the supported languages and the Chinese tokenizer.

Chinese is written without spaces, so word-level metrics (ROUGE, token F1, exact match) score it by
characters: every CJK character is one token, runs of Latin letters/digits stay one token each, and
punctuation (ASCII and full-width) and whitespace are dropped. This is the usual choice for Chinese QA
(CMRC 2018's evaluation script, https://github.com/ymcui/cmrc2018) and character-level ROUGE.
"""

from __future__ import annotations

import re

LANGS = ("en", "zh")

# CJK Unified Ideographs + Extension A + Compatibility Ideographs, and the Extension B..F planes.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_CHAR_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")


def check_lang(lang: str) -> str:
    """`lang` if supported, else ValueError naming it."""
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r}; choose one of {', '.join(LANGS)}")
    return lang


def char_level_tokens(text: str) -> list[str]:
    """Lower-cased tokens of `text`: each CJK character alone, other letter/digit runs whole, punctuation dropped.

    >>> char_level_tokens("我爱 Python 3，对吧？")
    ['我', '爱', 'python', '3', '对', '吧']
    """
    return _CHAR_TOKEN.findall(text.lower())


class CharLevelTokenizer:
    """`char_level_tokens` behind rouge-score's tokenizer interface (an object with `tokenize(text)`)."""

    def tokenize(self, text: str) -> list[str]:
        """The character-level tokens of `text`."""
        return char_level_tokens(text)
