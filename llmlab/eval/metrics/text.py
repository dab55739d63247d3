"""Corpus-level text-overlap metrics from well-kept libraries: BLEU and chrF (sacrebleu), ROUGE (rouge-score).

References for every function: `references[i]` belongs to `hypotheses[i]` and is one string or a list of
alternative reference strings (any number per hypothesis; sacrebleu's "variable number of references").

BLEU (Papineni et al., 2002, https://aclanthology.org/P02-1040/), as sacrebleu computes it
(Post, 2018, https://aclanthology.org/W18-6319/):

    BLEU = BP * exp( sum_{n=1..4} w_n * log p_n ),   w_n = 1/4 for every n (uniform weights, NOT 1/n)
    p_n  = modified (clipped) n-gram precision over the corpus: each hypothesis n-gram counts at most as
           often as it occurs in the single reference where it occurs most
    BP   = 1 if c > r else exp(1 - r / c)             (c: hypothesis length, r: closest reference length)

i.e. the geometric mean of the four modified precisions times the brevity penalty, reported on 0-100.
Tokenisation: sacrebleu's `13a` (mteval) for English; `zh` for Chinese, which splits every Chinese
character into its own token (unsegmented Chinese would otherwise be one "word" per sentence).

chrF (Popović, 2015, https://aclanthology.org/W15-3049/): F-beta (beta = 2) of character n-gram
(n = 1..6) precision and recall averaged over n, on 0-100. It works on characters, so it needs no word
segmentation and is the same for both languages.

ROUGE (Lin, 2004, https://aclanthology.org/W04-1013/) via Google's rouge-score, reported as F-measure:

    ROUGE-N: P = overlapping n-grams / hypothesis n-grams, R = overlapping n-grams / reference n-grams
    ROUGE-L: P = LCS(hyp, ref) / |hyp|,  R = LCS(hyp, ref) / |ref|   (LCS: longest common subsequence)
    F = 2 P R / (P + R)    -- the F-measure, not recall alone

averaged over the examples (with several references, the best-F reference per example). English uses
rouge-score's default tokenizer (lower-case, non-alphanumerics removed, no stemming); Chinese is scored at
CHARACTER level (`llmlab.eval.metrics.tokens.char_level_tokens`), because rouge-score's default tokenizer
deletes every non-ASCII character.
"""

from __future__ import annotations

from collections.abc import Sequence

from llmlab.eval.metrics.tokens import CharLevelTokenizer, check_lang

References = Sequence[str] | Sequence[Sequence[str]]
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def reference_lists(hypotheses: Sequence[str], references: References) -> list[list[str]]:
    """Per hypothesis, its list of references; ValueError when the counts differ or a list is empty."""
    if not hypotheses:
        raise ValueError("no hypotheses to score; pass at least one hypothesis/reference pair")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references; pass one per hypothesis")
    lists = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    for index, refs in enumerate(lists):
        if not refs:
            raise ValueError(f"hypothesis {index} has no reference; give it at least one")
    return lists


def _reference_streams(hypotheses: Sequence[str], references: References) -> list[list[str | None]]:
    """sacrebleu's layout: stream k holds every hypothesis's k-th reference (None where it has fewer)."""
    lists = reference_lists(hypotheses, references)
    width = max(len(refs) for refs in lists)
    return [[refs[k] if k < len(refs) else None for refs in lists] for k in range(width)]


def bleu(hypotheses: Sequence[str], references: References, lang: str = "en") -> float:
    """sacrebleu corpus BLEU (0-100) of `hypotheses` against `references`; `lang="zh"` uses its `zh` tokenizer."""
    from sacrebleu.metrics import BLEU

    tokenize = "zh" if check_lang(lang) == "zh" else "13a"
    scorer = BLEU(tokenize=tokenize)
    return float(scorer.corpus_score(list(hypotheses), _reference_streams(hypotheses, references)).score)


def chrf(hypotheses: Sequence[str], references: References, lang: str = "en") -> float:
    """sacrebleu corpus chrF (chrF2, 0-100); character-based, so `lang` only gets validated."""
    from sacrebleu.metrics import CHRF

    check_lang(lang)
    return float(CHRF().corpus_score(list(hypotheses), _reference_streams(hypotheses, references)).score)


def rouge(hypotheses: Sequence[str], references: References, lang: str = "en") -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measure (0-1) over the examples (rouge-score); Chinese at character level."""
    from rouge_score import rouge_scorer

    tokenizer = CharLevelTokenizer() if check_lang(lang) == "zh" else None
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False, tokenizer=tokenizer)
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    lists = reference_lists(hypotheses, references)
    for hypothesis, refs in zip(hypotheses, lists, strict=True):
        scores = scorer.score_multi(refs, hypothesis)  # the best-F reference per ROUGE type
        for name in ROUGE_TYPES:
            totals[name] += scores[name].fmeasure
    return {name: total / len(lists) for name, total in totals.items()}
