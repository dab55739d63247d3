"""Denoising objectives of encoder-decoders: T5 span corruption and BART text infilling + sentence permutation.

- T5 span corruption (Raffel et al. 2020, https://arxiv.org/abs/1910.10683, section 3.1.4): 15% of the tokens
  in spans of mean length 3; each noise span is replaced in the input by one sentinel (``<extra_id_0>``,
  ``<extra_id_1>``, ...: ids counting *down* from the end of the vocabulary, as in HF's T5 tokenizer), and the
  target lists each sentinel followed by the span it hides. `random_spans_noise_mask` is the exact logic of
  ``random_spans_noise_mask`` in HF's ``run_t5_mlm_flax.py`` / google-research/text-to-text-transfer-transformer
  (numpy's shuffle replaced by ``torch.randperm`` with the given generator).
- BART (Lewis et al. 2020, https://arxiv.org/abs/1910.13461): text infilling replaces spans with lengths drawn
  from Poisson(3) by ONE ``<mask>`` each (a 0-length span inserts a ``<mask>``), following fairseq's
  ``DenoisingDataset.add_whole_word_mask`` (``replace_length=1``); sentence permutation shuffles the sentences.
  The decoder target is the original text.

Pure functions with an explicit `torch.Generator`; the deterministic cores (`noise_mask_from_lengths`,
`span_corrupt_with_mask`, `infill_spans`, `reorder_sentences`) take the random choices as arguments, so tests pin
exact outputs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = [
    "infill_spans",
    "noise_mask_from_lengths",
    "permute_sentences",
    "random_segmentation",
    "random_spans_noise_mask",
    "reorder_sentences",
    "span_corrupt_with_mask",
    "span_corruption",
    "t5_sentinel_ids",
    "text_infilling",
]


def t5_sentinel_ids(vocab_size: int, count: int = 100) -> list[int]:
    """``<extra_id_0>``, ``<extra_id_1>``, ... as HF's T5 tokenizer numbers them: vocab_size-1, vocab_size-2, ..."""
    return [vocab_size - 1 - k for k in range(count)]


def random_segmentation(num_items: int, num_segments: int, generator: torch.Generator) -> list[int]:
    """Split `num_items` into `num_segments` non-empty segments at random; returns the segment lengths.

    As the t5 code: a 0/1 vector with ``num_segments - 1`` ones among ``num_items - 1`` places is shuffled, and
    each one starts a new segment after the first.
    """
    starts = [i < num_segments - 1 for i in range(num_items - 1)]
    order = torch.randperm(num_items - 1, generator=generator).tolist()
    shuffled = [starts[j] for j in order]
    lengths, current = [], 1
    for is_start in shuffled:
        if is_start:
            lengths.append(current)
            current = 1
        else:
            current += 1
    lengths.append(current)
    return lengths


def noise_mask_from_lengths(nonnoise_lengths: Sequence[int], noise_lengths: Sequence[int]) -> list[bool]:
    """The mask of interleaved spans: non-noise 0, noise 0, non-noise 1, noise 1, ... (True = noise)."""
    mask: list[bool] = []
    for keep, noise in zip(nonnoise_lengths, noise_lengths, strict=True):
        mask += [False] * keep + [True] * noise
    return mask


def random_spans_noise_mask(
    length: int, noise_density: float, mean_noise_span_length: float, generator: torch.Generator
) -> list[bool]:
    """T5's noise mask of a `length`-token sequence: ``round(length * noise_density)`` noise tokens (at least 1,
    at most ``length - 1``) in ``round(min(noise, non-noise) / mean_noise_span_length)`` spans (at least 1);
    the sequence starts with a non-noise span and ends with a noise span (HF's version of the t5 logic)."""
    if length < 2:
        raise ValueError(f"span corruption needs at least 2 tokens, got {length}")
    num_noise = int(round(length * noise_density))
    num_nonnoise = length - num_noise
    num_noise = min(max(num_noise, 1), length - 1)
    num_spans = max(int(round(min(num_noise, num_nonnoise) / mean_noise_span_length)), 1)
    num_nonnoise = length - num_noise
    noise_lengths = random_segmentation(num_noise, num_spans, generator)
    nonnoise_lengths = random_segmentation(num_nonnoise, num_spans, generator)
    return noise_mask_from_lengths(nonnoise_lengths, noise_lengths)


def span_corrupt_with_mask(
    ids: Sequence[int], noise_mask: Sequence[bool], sentinel_ids: Sequence[int], eos_id: int | None = None
) -> tuple[list[int], list[int]]:
    """(inputs, targets) of T5 span corruption for a given noise mask.

    inputs: the kept tokens with each noise span replaced by the next sentinel; targets: each sentinel followed
    by the span it replaced (HF's ``filter_input_ids`` with ``create_sentinel_ids``); `eos_id` is appended to
    both when given. Example: ids [a b c d e], noise at c d -> inputs [a b s0 e], targets [s0 c d].
    """
    if len(ids) != len(noise_mask):
        raise ValueError(f"noise mask has {len(noise_mask)} entries but the sequence has {len(ids)} tokens")
    inputs: list[int] = []
    targets: list[int] = []
    span = -1
    for i, (tok, noise) in enumerate(zip(ids, noise_mask, strict=True)):
        if noise:
            if i == 0 or not noise_mask[i - 1]:
                span += 1
                if span >= len(sentinel_ids):
                    raise ValueError(f"{span + 1} noise spans but only {len(sentinel_ids)} sentinel ids")
                inputs.append(sentinel_ids[span])
                targets.append(sentinel_ids[span])
            targets.append(tok)
        else:
            inputs.append(tok)
    if eos_id is not None:
        inputs.append(eos_id)
        targets.append(eos_id)
    return inputs, targets


def span_corruption(
    ids: Sequence[int],
    sentinel_ids: Sequence[int],
    noise_density: float = 0.15,
    mean_span: float = 3.0,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> tuple[list[int], list[int]]:
    """T5 span corruption of `ids` (without EOS): `random_spans_noise_mask` then `span_corrupt_with_mask`."""
    gen = generator or torch.Generator().manual_seed(0)
    mask = random_spans_noise_mask(len(ids), noise_density, mean_span, gen)
    return span_corrupt_with_mask(ids, mask, sentinel_ids, eos_id)


def infill_spans(ids: Sequence[int], spans: Sequence[tuple[int, int]], mask_id: int) -> list[int]:
    """Replace each (start, length) span by ONE `mask_id` (overlapping or touching spans merge into one mask);
    a span of length 0 inserts a mask before ``start``. Example: [a b c d e], spans (1, 2) and (4, 0) ->
    [a M d M e]."""
    masked = [False] * len(ids)
    inserts: set[int] = set()
    for start, length in spans:
        if length == 0:
            inserts.add(start)
        for i in range(start, min(start + length, len(ids))):
            masked[i] = True
    out: list[int] = []
    for i, tok in enumerate(ids):
        touches_mask = masked[i] or (i > 0 and masked[i - 1])  # an insert here merges into that mask
        if i in inserts and not touches_mask:
            out.append(mask_id)
        if not masked[i]:
            out.append(tok)
        elif i == 0 or not masked[i - 1]:
            out.append(mask_id)
    if len(ids) in inserts and not (ids and masked[-1]):
        out.append(mask_id)
    return out


def _poisson_span_lengths(num_to_mask: int, lam: float, generator: torch.Generator) -> list[int]:
    """fairseq's budget: Poisson(lam) lengths drawn until their sum reaches `num_to_mask`, the last trimmed."""
    lengths: list[int] = []
    while sum(lengths) < num_to_mask:
        rates = torch.full((num_to_mask,), float(lam))
        lengths += [int(x) for x in torch.poisson(rates, generator=generator).tolist()]
    out, total = [], 0
    for n in lengths:
        if total + n >= num_to_mask:
            out.append(num_to_mask - total)
            break
        out.append(n)
        total += n
    return out


def text_infilling(
    ids: Sequence[int],
    mask_id: int,
    mask_ratio: float = 0.3,
    poisson_lambda: float = 3.0,
    generator: torch.Generator | None = None,
    *,
    keep_first: int = 0,
    keep_last: int = 0,
) -> list[int]:
    """BART text infilling: ``ceil(mask_ratio * n)`` tokens masked in Poisson(`poisson_lambda`) spans, each span
    replaced by one mask; 0-length spans insert a mask. Span starts are distinct random positions (the first
    `keep_first` and last `keep_last` tokens, e.g. <s> and </s>, are never masked).

    Returns:
        the noised ids (the decoder's target is the original `ids`).
    """
    gen = generator or torch.Generator().manual_seed(0)
    lo, hi = keep_first, len(ids) - keep_last  # maskable positions [lo, hi)
    n = hi - lo
    num_to_mask = math.ceil(n * mask_ratio)
    if n <= 0 or num_to_mask == 0:
        return list(ids)
    lengths = _poisson_span_lengths(num_to_mask, poisson_lambda, gen)
    starts = (torch.randperm(n, generator=gen)[: len(lengths)] + lo).tolist()
    spans = [(s, min(k, hi - s)) for s, k in zip(starts, lengths, strict=False)]
    return infill_spans(ids, spans, mask_id)


def reorder_sentences(sentences: Sequence[Sequence[int]], order: Sequence[int]) -> list[int]:
    """The concatenation of ``sentences[order[0]], sentences[order[1]], ...``."""
    return [tok for k in order for tok in sentences[k]]


def permute_sentences(
    ids: Sequence[int], sentence_end_ids: Sequence[int], generator: torch.Generator | None = None
) -> list[int]:
    """BART sentence permutation: split after every token in `sentence_end_ids` (a trailing partial sentence
    counts as one) and shuffle the sentences with ``torch.randperm``."""
    ends = set(sentence_end_ids)
    sentences: list[list[int]] = [[]]
    for tok in ids:
        sentences[-1].append(tok)
        if tok in ends:
            sentences.append([])
    sentences = [s for s in sentences if s]
    order = torch.randperm(len(sentences), generator=generator or torch.Generator().manual_seed(0)).tolist()
    return reorder_sentences(sentences, order)
