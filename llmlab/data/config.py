"""`PrepareConfig`: everything `llmlab data prepare` does, as a dataclass (YAML + dotted overrides).

    llmlab data prepare --config configs/data/shakespeare-bpe.yaml clean.near_dedup.threshold=0.9

No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llmlab.data.pii import PII_KINDS
from llmlab.data.reader import DEFAULT_CHUNK_CHARS
from llmlab.data.sources import DEFAULT_EXTENSIONS, DOCUMENT_MODES, check_encoding
from llmlab.tokenizers import TOKENIZER_KINDS, check_training_args

SPLIT_MODES = ("auto", "tail", "random")
DTYPES = ("auto", "uint16", "uint32")
DEDUP_UNITS = ("paragraph", "document")
MIN_CHUNK_CHARS = 1000


@dataclass
class StepConfig:
    """What every cleaning step has: a switch (`clean.<step>.enabled=false`, or `--no-clean` for all)."""

    enabled: bool = True


@dataclass
class NormalizeConfig(StepConfig):
    """Unicode normalisation (https://unicode.org/reports/tr15/); NFKC folds full-width and compatibility
    characters (e.g. `Ａ`→`A`, `ﬁ`→`fi`, `①`→`1`) so one string has one spelling. `keep_cjk_punctuation`
    (default) leaves full-width punctuation (，？！；：（） ...) alone, so Chinese text keeps one style of
    punctuation (plain NFKC turns ， into , but leaves 。); `keep_cjk_punctuation: false` is plain NFKC."""

    form: str = "NFKC"
    keep_cjk_punctuation: bool = True


@dataclass
class DedupConfig(StepConfig):
    """What both dedup steps have: the unit they compare (`paragraph` or `document`) and a minimum length."""

    unit: str = "paragraph"
    min_chars: int = 50  # shorter units are never dropped: short lines ("Exeunt.") repeat naturally


@dataclass
class ExactDedupConfig(DedupConfig):
    """Drop a unit (paragraph or document) whose whitespace-collapsed text was seen before."""


@dataclass
class NearDedupConfig(DedupConfig):
    """MinHash-LSH near-duplicate removal over character n-gram shingles (works for Chinese)."""

    threshold: float = 0.8  # estimated Jaccard similarity above which a unit is a near-duplicate
    num_perm: int = 128
    ngram: int = 5
    seed: int = 1


@dataclass
class QualityConfig(StepConfig):
    """Gopher-style document filters (https://arxiv.org/abs/2112.11446); a bound of 0 (max_chars) or 1.0
    (fractions) switches a rule off. Gopher uses 0.30 for duplicate lines; plays put every speaker's name
    on a line of its own (up to 0.30 in the `shakespeare` plays), hence the looser default."""

    min_chars: int = 20
    max_chars: int = 0
    max_symbol_ratio: float = 0.1
    max_duplicate_line_fraction: float = 0.4
    max_duplicate_ngram_fraction: float = 0.15
    ngram: int = 5


@dataclass
class PIIConfig(StepConfig):
    """Replace e-mails, URLs, phone numbers, Chinese ID numbers and IP addresses with placeholders."""

    kinds: list[str] = field(default_factory=lambda: list(PII_KINDS))


@dataclass
class CleanConfig:
    """The cleaning steps, run in this order: normalize, pii, exact_dedup, near_dedup, quality."""

    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    pii: PIIConfig = field(default_factory=PIIConfig)
    exact_dedup: ExactDedupConfig = field(default_factory=ExactDedupConfig)
    near_dedup: NearDedupConfig = field(default_factory=NearDedupConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)

    def disable_all(self) -> None:
        """Switch every cleaning step off (raw text goes straight to the split)."""
        for step in (self.normalize, self.pii, self.exact_dedup, self.near_dedup, self.quality):
            step.enabled = False


@dataclass
class SplitConfig:
    """Train/val split. `tail`: the last `val_fraction` of the characters (documents in order; the
    document on the boundary is cut), exactly nanoGPT's `data[:int(n*0.9)]` / `data[int(n*0.9):]` for a
    single text. `random`: a seeded random `val_fraction` of whole documents. `auto`: `random` when there
    are at least 10 documents, else `tail`."""

    mode: str = "auto"
    val_fraction: float = 0.1
    seed: int = 1337


@dataclass
class TokenizerSpec:
    """Use an existing tokenizer (`path`: tokenizer.json or its folder) or train one on the cleaned corpus."""

    path: str = ""
    kind: str = "bpe"
    vocab_size: int = 4096
    min_frequency: int = 0
    bos: str = "<|bos|>"
    eos: str = "<|endoftext|>"
    pad: str = "<|pad|>"
    unk: str = "<|unk|>"
    mask: str = ""

    def special_tokens(self) -> dict[str, str | None]:
        return {"bos": self.bos, "eos": self.eos, "pad": self.pad, "unk": self.unk, "mask": self.mask}


@dataclass
class PrepareConfig:
    """Configuration of `prepare_corpus` / `llmlab data prepare`.

    `sources`: files, folders, `.jsonl` files or built-in corpora (`shakespeare`, `tinyshakespeare`).
    `out_dir`: "" = `data/<name of the first source>`. `documents`: how text files become documents
    (`file`, `paragraph`, `line`; JSONL: one record = one document). `encoding`: of the source files.
    `dtype`: of the token shards (`auto` = uint16 when the vocabulary fits, else uint32). `chunk_chars`:
    text is read, cleaned, used for tokenizer training and encoded in pieces of at most this many
    characters, so memory grows with it, not with the corpus (see `llmlab.data.reader`).
    """

    sources: list[str] = field(default_factory=lambda: ["shakespeare"])
    out_dir: str = ""
    text_field: str = "text"
    documents: str = "file"
    extensions: list[str] = field(default_factory=lambda: list(DEFAULT_EXTENSIONS))
    clean: CleanConfig = field(default_factory=CleanConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    dtype: str = "auto"
    encoding: str = "utf-8"
    chunk_chars: int = DEFAULT_CHUNK_CHARS

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        checks = [
            (self.documents in DOCUMENT_MODES, f"documents must be one of {DOCUMENT_MODES}, got '{self.documents}'"),
            (self.split.mode in SPLIT_MODES, f"split.mode must be one of {SPLIT_MODES}, got '{self.split.mode}'"),
            (
                0.0 <= self.split.val_fraction < 1.0,
                f"split.val_fraction must be in [0, 1), got {self.split.val_fraction}",
            ),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got '{self.dtype}'"),
            (self.clean.exact_dedup.unit in DEDUP_UNITS, f"clean.exact_dedup.unit must be one of {DEDUP_UNITS}"),
            (self.clean.near_dedup.unit in DEDUP_UNITS, f"clean.near_dedup.unit must be one of {DEDUP_UNITS}"),
            (
                0.0 < self.clean.near_dedup.threshold < 1.0,
                f"clean.near_dedup.threshold must be in (0, 1), got {self.clean.near_dedup.threshold}",
            ),
            (bool(self.sources), "sources is empty; pass --source FILE|FOLDER|shakespeare|tinyshakespeare"),
            (
                self.chunk_chars >= MIN_CHUNK_CHARS,
                f"chunk_chars must be at least {MIN_CHUNK_CHARS}, got {self.chunk_chars}",
            ),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        check_encoding(self.encoding)
        if not self.tokenizer.path:
            spec = self.tokenizer
            if spec.kind not in TOKENIZER_KINDS:
                raise ValueError(f"tokenizer.kind must be one of {TOKENIZER_KINDS}, got '{spec.kind}'")
            check_training_args(spec.kind, spec.vocab_size, spec.min_frequency)
        bad = [k for k in self.clean.pii.kinds if k not in PII_KINDS]
        if bad:
            raise ValueError(f"unknown clean.pii.kinds {bad}; choose from: {', '.join(PII_KINDS)}")
