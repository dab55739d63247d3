"""The cleaning steps of `llmlab data prepare`, each optional and each reporting what it changed.

Order: normalize -> pii -> exact_dedup -> near_dedup -> quality. A document is kept as a list of
(paragraph, separator) pairs, so the dedup steps can drop single paragraphs (`unit: paragraph`) while the
remaining text of the document keeps its original layout; with every step off the text is unchanged.
"""

from __future__ import annotations

import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from llmlab.data.config import CleanConfig, ExactDedupConfig, NearDedupConfig, NormalizeConfig, PIIConfig, QualityConfig
from llmlab.data.dedup import NearDuplicateIndex, exact_duplicates
from llmlab.data.pii import scrub_pii
from llmlab.data.quality import quality_issue
from llmlab.data.sources import Document, split_paragraphs


@dataclass
class CorpusDoc:
    """A document being cleaned: `parts` are [paragraph, separator] pairs; `text` joins them back."""

    parts: list[list[str]]
    source: str

    @classmethod
    def from_document(cls, doc: Document) -> CorpusDoc:
        return cls([[p, s] for p, s in split_paragraphs(doc.text)], doc.source)

    @property
    def text(self) -> str:
        return "".join(p + s for p, s in self.parts)

    def __len__(self) -> int:
        return sum(len(p) + len(s) for p, s in self.parts)


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


def _drop_empty(docs: list[CorpusDoc]) -> list[CorpusDoc]:
    return [d for d in docs if any(p.strip() for p, _ in d.parts)]


def normalize_step(docs: list[CorpusDoc], cfg: NormalizeConfig, rep: StepReport) -> list[CorpusDoc]:
    """Unicode normalisation; counts the characters whose normal form differs and the documents touched."""
    form = cfg.form.upper()
    if form not in ("NFC", "NFD", "NFKC", "NFKD"):
        raise ValueError(f"clean.normalize.form must be NFC, NFD, NFKC or NFKD, got '{cfg.form}'")
    rep.unit, rep.units_in = "characters", sum(len(d) for d in docs)
    changed_docs = 0
    for d in docs:
        touched = False
        for part in d.parts:
            for k in (0, 1):
                new = unicodedata.normalize(form, part[k])
                if new != part[k]:
                    rep.chars_changed += sum(1 for c in part[k] if unicodedata.normalize(form, c) != c)
                    rep.chars_removed += len(part[k]) - len(new)
                    part[k], touched = new, True
        changed_docs += touched
    rep.details = {"form": form, "documents_changed": changed_docs}
    return _drop_empty(docs)


def pii_step(docs: list[CorpusDoc], cfg: PIIConfig, rep: StepReport) -> list[CorpusDoc]:
    """Replace PII with placeholders; `details` holds the number of replacements per kind."""
    counts: Counter = Counter()
    rep.unit, rep.units_in = "matches", 0
    changed_docs = 0
    for d in docs:
        touched = False
        for part in d.parts:
            new = scrub_pii(part[0], cfg.kinds, counts)
            if new != part[0]:
                rep.chars_changed += abs(len(part[0]) - len(new)) or 1
                part[0], touched = new, True
        changed_docs += touched
    rep.details = {kind: counts.get(kind, 0) for kind in cfg.kinds} | {"documents_changed": changed_docs}
    rep.units_in = sum(counts.values())
    return docs


def _dedup_step(
    docs: list[CorpusDoc],
    unit: str,
    min_chars: int,
    is_dup: Callable[[list[str]], list[bool]],
    rep: StepReport,
) -> list[CorpusDoc]:
    """Shared body of the two dedup steps: mark units (documents or paragraphs) as duplicates and drop them."""
    n_docs = len(docs)
    if unit == "document":
        rep.unit, rep.units_in = "documents", len(docs)
        idx = [i for i, d in enumerate(docs) if len(d.text.strip()) >= min_chars]
        flags = is_dup([docs[i].text for i in idx])
        drop = {i for i, f in zip(idx, flags, strict=True) if f}
        rep.removed = len(drop)
        rep.chars_removed = sum(len(docs[i]) for i in drop)
        kept = [d for i, d in enumerate(docs) if i not in drop]
    else:
        refs = [(di, pi) for di, d in enumerate(docs) for pi, (p, _) in enumerate(d.parts) if p.strip()]
        rep.unit, rep.units_in = "paragraphs", len(refs)
        cand = [(di, pi) for di, pi in refs if len(docs[di].parts[pi][0].strip()) >= min_chars]
        flags = is_dup([docs[di].parts[pi][0] for di, pi in cand])
        drop = {ref for ref, f in zip(cand, flags, strict=True) if f}
        rep.removed = len(drop)
        for di, pi in drop:
            rep.chars_removed += len(docs[di].parts[pi][0])
            docs[di].parts[pi] = None  # type: ignore[call-overload]
        for d in docs:  # a removed paragraph vanishes together with the blank line after it
            d.parts = [part for part in d.parts if part is not None]
        kept = _drop_empty(docs)
    rep.documents_removed = n_docs - len(kept)
    return kept


def exact_dedup_step(docs: list[CorpusDoc], cfg: ExactDedupConfig, rep: StepReport) -> list[CorpusDoc]:
    return _dedup_step(docs, cfg.unit, cfg.min_chars, exact_duplicates, rep)


def near_dedup_step(docs: list[CorpusDoc], cfg: NearDedupConfig, rep: StepReport) -> list[CorpusDoc]:
    def flags(texts: list[str]) -> list[bool]:
        index = NearDuplicateIndex(cfg.threshold, cfg.num_perm, cfg.ngram, cfg.seed)
        return [index.is_duplicate(t) for t in texts]

    rep.details = {"threshold": cfg.threshold, "ngram": cfg.ngram, "num_perm": cfg.num_perm}
    return _dedup_step(docs, cfg.unit, cfg.min_chars, flags, rep)


def quality_step(docs: list[CorpusDoc], cfg: QualityConfig, rep: StepReport) -> list[CorpusDoc]:
    """Drop documents that break a Gopher-style rule; `details` counts removals per rule."""
    rep.unit, rep.units_in = "documents", len(docs)
    reasons: Counter = Counter()
    kept = []
    for d in docs:
        text = d.text
        issue = quality_issue(
            text,
            min_chars=cfg.min_chars,
            max_chars=cfg.max_chars,
            max_symbol_ratio=cfg.max_symbol_ratio,
            max_duplicate_line_fraction=cfg.max_duplicate_line_fraction,
            max_duplicate_ngram_fraction=cfg.max_duplicate_ngram_fraction,
            ngram=cfg.ngram,
        )
        if issue is None:
            kept.append(d)
        else:
            reasons[issue] += 1
            rep.chars_removed += len(text)
    rep.removed = rep.documents_removed = len(docs) - len(kept)
    rep.details = dict(reasons)
    return kept


STEPS: list[tuple[str, Callable]] = [
    ("normalize", normalize_step),
    ("pii", pii_step),
    ("exact_dedup", exact_dedup_step),
    ("near_dedup", near_dedup_step),
    ("quality", quality_step),
]


def clean_documents(docs: list[Document], cfg: CleanConfig) -> tuple[list[CorpusDoc], list[StepReport]]:
    """Run the enabled steps in order; returns the kept documents and one report per step.

    Raises:
        ValueError: every document was removed (naming the steps that removed them).
    """
    cdocs = [CorpusDoc.from_document(d) for d in docs]
    reports = []
    for name, fn in STEPS:
        step_cfg = getattr(cfg, name)
        rep = StepReport(name=name, enabled=step_cfg.enabled)
        if step_cfg.enabled:
            t0 = time.perf_counter()
            cdocs = fn(cdocs, step_cfg, rep)
            rep.seconds = round(time.perf_counter() - t0, 3)
        reports.append(rep)
        if not cdocs:
            culprits = ", ".join(f"{r.name} removed {r.documents_removed}" for r in reports if r.documents_removed)
            raise ValueError(
                f"all {len(docs)} documents were removed by the cleaning steps ({culprits}); loosen them "
                f"(e.g. clean.{name}.enabled=false or other thresholds) or add more text"
            )
    return cdocs, reports
