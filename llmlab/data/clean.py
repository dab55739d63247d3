"""The cleaning steps of `llmlab data prepare`, each optional and each reporting what it changed.

Order: normalize -> pii -> exact_dedup -> near_dedup -> quality. A document arrives as a stream of
(paragraph, separator) pieces (`llmlab.data.reader`), so the dedup steps can drop single paragraphs
(`unit: paragraph`) while the remaining text of the document keeps its original layout; with every step off
the text is unchanged. `Cleaner` works on one document at a time and keeps only a bounded window of it:
the quality filters (and dedup with `unit: document`) judge a whole document when it is at most
`chunk_chars` characters long, and a longer one window by window (windows of at most `chunk_chars`
characters, cut between paragraphs), dropping only the windows that fail.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from llmlab.data.config import CleanConfig
from llmlab.data.dedup import NearDuplicateIndex, exact_key
from llmlab.data.pii import scrub_pii
from llmlab.data.quality import quality_issue
from llmlab.data.reader import DEFAULT_CHUNK_CHARS, iter_paragraphs

NORMAL_FORMS = ("NFC", "NFD", "NFKC", "NFKD")
# Full-width punctuation (，！？；：（） ...): Chinese text writes these; NFKC would turn them into ASCII.
FULLWIDTH_PUNCTUATION = "".join(c for c in map(chr, range(0xFF01, 0xFF5F)) if unicodedata.category(c).startswith("P"))
_KEPT_PUNCTUATION = re.compile(f"[{re.escape(FULLWIDTH_PUNCTUATION)}]+")


def normalize_text(text: str, form: str = "NFKC", keep_cjk_punctuation: bool = True) -> str:
    """Unicode normal form `form` of `text` (https://unicode.org/reports/tr15/); with `keep_cjk_punctuation`
    the full-width punctuation `FULLWIDTH_PUNCTUATION` (，？！；： ...) is left as it is."""
    if not keep_cjk_punctuation or form in ("NFC", "NFD") or not _KEPT_PUNCTUATION.search(text):
        return unicodedata.normalize(form, text)
    out, pos = [], 0
    for m in _KEPT_PUNCTUATION.finditer(text):
        out += [unicodedata.normalize(form, text[pos : m.start()]), m.group()]
        pos = m.end()
    out.append(unicodedata.normalize(form, text[pos:]))
    return "".join(out)


@dataclass
class Document:
    """One document held in memory: its text and the file it came from."""

    text: str
    source: str


@dataclass
class StepReport:
    """What one cleaning step did. `removed` counts `unit`s (documents or paragraphs) dropped."""

    name: str
    enabled: bool
    unit: str = "documents"
    units_in: int = 0
    removed: int = 0
    documents_removed: int = 0
    chars_removed: int = 0
    chars_changed: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


STEP_NAMES = ("normalize", "pii", "exact_dedup", "near_dedup", "quality")
Part = list[str]  # [paragraph, separator]


def _has_text(part: Part) -> bool:
    return bool(part[0].strip())


class Cleaner:
    """Run the enabled cleaning steps over documents streamed one at a time; `reports` says what each did.

    Args:
        cfg: which steps run, with their settings.
        chunk_chars: the window of a long document that window-level steps judge at once.
    """

    def __init__(self, cfg: CleanConfig, chunk_chars: int = DEFAULT_CHUNK_CHARS) -> None:
        self.cfg, self.chunk_chars = cfg, chunk_chars
        self.reports = [StepReport(name=n, enabled=getattr(cfg, n).enabled) for n in STEP_NAMES]
        self.steps = [k for k, n in enumerate(STEP_NAMES) if getattr(cfg, n).enabled]
        self.form = cfg.normalize.form.upper()
        if self.form not in NORMAL_FORMS:
            raise ValueError(f"clean.normalize.form must be NFC, NFD, NFKC or NFKD, got '{cfg.normalize.form}'")
        window_level = [k for k in self.steps if STEP_NAMES[k] == "quality" or self._unit(k) == "document"]
        self.first_window_step = window_level[0] if window_level else len(STEP_NAMES)
        self.exact_seen: set[bytes] = set()
        near = cfg.near_dedup
        self.near_index = (
            NearDuplicateIndex(near.threshold, near.num_perm, near.ngram, near.seed) if near.enabled else None
        )
        self.pii_counts: Counter = Counter()
        self.quality_reasons: Counter = Counter()
        self.changed_docs = Counter()
        self.documents_in = self.documents_out = self.chars_in = self.windows_removed = 0
        self.seconds = [0.0] * len(STEP_NAMES)
        for k in self.steps:
            self.reports[k].unit = {"normalize": "characters", "pii": "matches", "quality": "documents"}.get(
                STEP_NAMES[k], "paragraphs" if self._unit(k) == "paragraph" else "documents"
            )

    def _unit(self, k: int) -> str:
        return getattr(self.cfg, STEP_NAMES[k]).unit if STEP_NAMES[k] in ("exact_dedup", "near_dedup") else ""

    # ---- one step on one part (paragraph level) or one window (document level) ------------------------------
    def _part_step(self, k: int, part: Part) -> bool:
        """Apply step `k` to one [paragraph, separator] part in place; False when it drops the part."""
        name, rep = STEP_NAMES[k], self.reports[k]
        if name == "normalize":
            rep.units_in += len(part[0]) + len(part[1])
            for i in (0, 1):
                new = normalize_text(part[i], self.form, self.cfg.normalize.keep_cjk_punctuation)
                if new != part[i]:
                    rep.chars_changed += sum(1 for c in part[i] if normalize_text(c, self.form, True) != c)
                    rep.chars_removed += len(part[i]) - len(new)
                    part[i], self._touched[k] = new, True
            return True
        if name == "pii":
            new = scrub_pii(part[0], self.cfg.pii.kinds, self.pii_counts)
            if new != part[0]:
                rep.chars_changed += abs(len(part[0]) - len(new)) or 1
                part[0], self._touched[k] = new, True
            return True
        if not _has_text(part):
            return True
        rep.units_in += 1
        if self._is_duplicate(k, part[0]):
            rep.removed += 1
            rep.chars_removed += len(part[0])
            return False
        return True

    def _is_duplicate(self, k: int, text: str) -> bool:
        step = getattr(self.cfg, STEP_NAMES[k])
        if len(text.strip()) < step.min_chars:
            return False
        if STEP_NAMES[k] == "near_dedup":
            return self.near_index.is_duplicate(text)  # type: ignore[union-attr]
        key = exact_key(text)
        if key in self.exact_seen:
            return True
        self.exact_seen.add(key)
        return False

    def _window_step(self, k: int, window: list[Part]) -> bool:
        """Apply step `k` to a whole window; False when it drops the window."""
        if STEP_NAMES[k] != "quality" and self._unit(k) != "document":
            window[:] = [p for p in window if self._part_step(k, p)]
            return True
        text = "".join(p + s for p, s in window)
        rep = self.reports[k]
        if STEP_NAMES[k] == "quality":
            q = self.cfg.quality
            issue = quality_issue(
                text,
                min_chars=q.min_chars,
                max_chars=q.max_chars,
                max_symbol_ratio=q.max_symbol_ratio,
                max_duplicate_line_fraction=q.max_duplicate_line_fraction,
                max_duplicate_ngram_fraction=q.max_duplicate_ngram_fraction,
                ngram=q.ngram,
            )
            if issue is not None:
                self.quality_reasons[issue] += 1
        else:
            rep.units_in += 1
            issue = "duplicate" if self._is_duplicate(k, text) else None
            rep.removed += issue is not None
        if issue is not None:
            rep.chars_removed += len(text)
        return issue is None

    # ---- documents ------------------------------------------------------------------------------------------
    def _flush(self, window: list[Part]) -> Iterator[str]:
        for k in self.steps:
            if k < self.first_window_step:
                continue
            t0 = time.perf_counter()
            passed = self._window_step(k, window)
            self.seconds[k] += time.perf_counter() - t0
            if not passed:
                self.windows_removed += STEP_NAMES[k] == "quality"
                return
            if any(_has_text(p) for p in window):
                self._survived[k] = True
        if any(_has_text(p) for p in window):
            self._kept = True
            yield "".join(p + s for p, s in window)

    def clean(self, parts: Iterable[tuple[str, str]]) -> Iterator[str]:
        """Clean one document given as (paragraph, separator) pieces; yields its kept text in pieces.

        Yields nothing when the document is removed, or is only whitespace (then it is not counted).
        """
        pending: list[Part] = []  # whitespace before the first text (dropped with an all-whitespace document)
        window: list[Part] = []
        size, started, window_has_text = 0, False, False
        self._touched, self._survived, self._kept = {}, {}, False
        for paragraph, separator in parts:
            new: Part = [paragraph, separator]
            if not started:
                pending.append(new)
                if not _has_text(new):
                    continue
                started, self.documents_in = True, self.documents_in + 1
            for part in pending or [new]:
                self.chars_in += len(part[0]) + len(part[1])
                if not self._ingest(part):
                    continue
                if window_has_text and size + len(part[0]) + len(part[1]) > self.chunk_chars:
                    yield from self._flush(window)
                    window, size, window_has_text = [], 0, False
                window.append(part)
                size += len(part[0]) + len(part[1])
                window_has_text = window_has_text or _has_text(part)
            pending = []
        if not started:
            return
        if window_has_text:  # a window of whitespace alone goes (its text was removed)
            yield from self._flush(window)
        self._finish_document()

    def _ingest(self, part: Part) -> bool:
        """Run the paragraph-level steps (those before the first window-level one) on a new part."""
        for k in self.steps:
            if k >= self.first_window_step:
                break
            t0 = time.perf_counter()
            kept = self._part_step(k, part)
            self.seconds[k] += time.perf_counter() - t0
            if not kept:
                return False
            if _has_text(part):
                self._survived[k] = True
        return True

    def _finish_document(self) -> None:
        alive = True
        for k in self.steps:
            if alive and not self._survived.get(k, False):
                self.reports[k].documents_removed += 1
                alive = False
            if STEP_NAMES[k] in ("normalize", "pii"):
                self.changed_docs[k] += self._touched.get(k, False)
        self.documents_out += self._kept

    def finish(self) -> list[StepReport]:
        """Complete the reports after the last document.

        Raises:
            ValueError: every document was removed (naming the steps that removed them).
        """
        for k in self.steps:
            rep, name = self.reports[k], STEP_NAMES[k]
            rep.seconds = round(self.seconds[k], 3)
            if name == "normalize":
                rep.details = {"form": self.form, "documents_changed": self.changed_docs[k]}
                if self.form in ("NFKC", "NFKD"):
                    rep.details["keep_cjk_punctuation"] = self.cfg.normalize.keep_cjk_punctuation
            elif name == "pii":
                rep.units_in = sum(self.pii_counts.values())
                rep.details = {kind: self.pii_counts.get(kind, 0) for kind in self.cfg.pii.kinds}
                rep.details["documents_changed"] = self.changed_docs[k]
            elif name == "near_dedup":
                c = self.cfg.near_dedup
                rep.details = {"threshold": c.threshold, "ngram": c.ngram, "num_perm": c.num_perm}
            elif name == "quality":
                rep.units_in, rep.removed = self.documents_in, rep.documents_removed
                rep.details = dict(self.quality_reasons)
                if self.windows_removed > rep.removed:
                    rep.details["windows_removed"] = self.windows_removed
        if self.documents_in and not self.documents_out:
            culprits = [r for r in self.reports if r.documents_removed]
            names = ", ".join(f"{r.name} removed {r.documents_removed}" for r in culprits)
            last = culprits[-1].name if culprits else "quality"
            raise ValueError(
                f"all {self.documents_in} documents were removed by the cleaning steps ({names}); loosen them "
                f"(e.g. clean.{last}.enabled=false or other thresholds) or add more text"
            )
        return self.reports


def clean_documents(
    docs: list[Document], cfg: CleanConfig, chunk_chars: int = DEFAULT_CHUNK_CHARS
) -> tuple[list[Document], list[StepReport]]:
    """Clean documents held in memory (see `Cleaner`); returns the kept documents and one report per step.

    Raises:
        ValueError: every document was removed (naming the steps that removed them).
    """
    cleaner = Cleaner(cfg, chunk_chars)
    kept = []
    for doc in docs:
        text = "".join(cleaner.clean(iter_paragraphs([doc.text], chunk_chars)))
        if text:
            kept.append(Document(text, doc.source))
    return kept, cleaner.finish()
