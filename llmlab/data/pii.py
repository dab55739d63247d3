"""Scrub personally identifiable information (PII) from text with regular expressions.

Each kind is replaced by a placeholder: e-mail -> `<EMAIL>`, URL -> `<URL>`, phone number -> `<PHONE>`
(international `+1 555-123-4567`, `(555) 123-4567`, Chinese mobile `13812345678` / `+86 138 1234 5678`,
Chinese landline `010-12345678`), Chinese resident ID number (18 digits, last may be X) -> `<ID>`,
IPv4 / IPv6 address -> `<IP>`. Regexes catch the common formats, not every one (see e.g. the PII
filtering of BigScience ROOTS, https://arxiv.org/abs/2303.03915, which uses the same approach).

Kinds run in a fixed order (URL, e-mail, ID, phone, IP) so that, e.g., an ID number is not taken for a
phone number. Digits glued to other digits never match (lookarounds), so long numbers stay intact.
"""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable

PII_KINDS: tuple[str, ...] = ("url", "email", "id", "phone", "ip")
PLACEHOLDERS = {"url": "<URL>", "email": "<EMAIL>", "id": "<ID>", "phone": "<PHONE>", "ip": "<IP>"}

_URL = re.compile(
    r"(?:(?<![A-Za-z0-9])(?:https?|ftp)://|(?<![@\w.])www\.)[^\s<>\"'，。、；：！？）】》「」]+", re.IGNORECASE
)
_URL_TRAILING = ".,;:!?)]}'\""
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Chinese resident identity card: 6-digit area, birth date YYYYMMDD (1800-2099), 3-digit order, check digit/X.
_CN_ID = re.compile(
    r"(?<![\dA-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dA-Za-z])"
)
_PHONE = re.compile(
    r"(?<![0-9A-Za-z+])(?:"
    r"(?:\+?86[-\s]?)?1[3-9]\d[-\s]?\d{4}[-\s]?\d{4}"  # Chinese mobile: 138 1234 5678, +86 13812345678
    r"|0\d{2,3}-\d{7,8}"  # Chinese landline: 010-12345678, 0755-1234567
    r"|(?:\+\d{1,3}[-.\s]?)?(?:\(\d{3}\)\s?|\d{3}[-.\s])\d{3}[-.\s]\d{4}"  # +1 (555) 123-4567, 555.123.4567
    r"|\+\d{1,3}[-\s]\d{1,4}(?:[-\s]\d{2,4}){2,3}"  # other international: +44 20 7946 0958
    r")(?![0-9A-Za-z])"
)
_IPV4 = re.compile(
    r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\.?\d)"
)
_IPV6_CANDIDATE = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


def _sub_url(text: str, counts: Counter) -> str:
    def repl(m: re.Match) -> str:
        url = m.group()
        end = len(url)
        # trailing punctuation ends the sentence, not the URL; a ")" stays if it closes a "(" in the URL
        while end and url[end - 1] in _URL_TRAILING:
            if url[end - 1] == ")" and url[:end].count("(") >= url[:end].count(")"):
                break
            end -= 1
        counts["url"] += 1
        return PLACEHOLDERS["url"] + url[end:]

    return _URL.sub(repl, text)


def _simple(kind: str, pattern: re.Pattern) -> Callable[[str, Counter], str]:
    def sub(text: str, counts: Counter) -> str:
        new, n = pattern.subn(PLACEHOLDERS[kind], text)
        counts[kind] += n
        return new

    return sub


def _sub_ip(text: str, counts: Counter) -> str:
    new, n = _IPV4.subn(PLACEHOLDERS["ip"], text)
    counts["ip"] += n

    def repl6(m: re.Match) -> str:
        cand = m.group()
        if cand.count(":") < 2 or ("::" not in cand and cand.count(":") != 7):
            return cand
        try:
            ipaddress.IPv6Address(cand)
        except ValueError:
            return cand
        counts["ip"] += 1
        return PLACEHOLDERS["ip"]

    return _IPV6_CANDIDATE.sub(repl6, new) if ":" in new else new


_SUBS: dict[str, Callable[[str, Counter], str]] = {
    "url": _sub_url,
    "email": _simple("email", _EMAIL),
    "id": _simple("id", _CN_ID),
    "phone": _simple("phone", _PHONE),
    "ip": _sub_ip,
}


_HAS_DIGIT = re.compile(r"\d")
_GUARDS: dict[str, Callable[[str], bool]] = {
    "url": lambda t: "://" in t or "www." in t or "WWW." in t,
    "email": lambda t: "@" in t,
    "id": lambda t: _HAS_DIGIT.search(t) is not None,
    "phone": lambda t: _HAS_DIGIT.search(t) is not None,
    "ip": lambda t: ":" in t or ("." in t and _HAS_DIGIT.search(t) is not None),
}


def scrub_pii(text: str, kinds: tuple[str, ...] | list[str] = PII_KINDS, counts: Counter | None = None) -> str:
    """Replace PII of the given kinds with placeholders; add how many of each were found to `counts`.

    Raises:
        ValueError: an unknown kind.
    """
    counts = Counter() if counts is None else counts
    for kind in PII_KINDS:  # fixed order, whatever order `kinds` has
        if kind in kinds and _GUARDS[kind](text):  # cheap test first: most text has no PII at all
            text = _SUBS[kind](text, counts)
    for kind in kinds:
        if kind not in _SUBS:
            raise ValueError(f"unknown PII kind '{kind}'; choose from: {', '.join(PII_KINDS)}")
    return text
