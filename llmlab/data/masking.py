"""Masked-language-model inputs: BERT's 80/10/10 masking, whole-word masking (Chinese words from jieba), and
static vs dynamic (RoBERTa) masking.

- BERT (Devlin et al. 2019, https://arxiv.org/abs/1810.04805): choose 15% of the (non-special) tokens; of the
  chosen, 80% become ``[MASK]``, 10% a random token, 10% stay; the loss is on the chosen tokens only
  (``labels`` = the original id there, -100 elsewhere).
- Whole-word masking (Google's BERT release, Chinese: Cui et al. 2019, https://arxiv.org/abs/1906.08101): the
  choice is made per *word*, and every token of a chosen word is masked; the 80/10/10 action stays per token.
- Dynamic masking (RoBERTa, Liu et al. 2019, https://arxiv.org/abs/1907.11692): a new mask every time a sequence
  is drawn, vs BERT's static masking fixed once in preprocessing (`masking_seed`).

Everything here is a pure function of its inputs and an explicit `torch.Generator`. The random numbers are
drawn in one documented order (`draw_masking`) and turned into the masked sequence by the deterministic
`apply_masking`, so tests can give hand-chosen draws and check every position exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
MASK_FRACTION, RANDOM_FRACTION = 0.8, 0.1  # of the chosen tokens; the rest (0.1) stay unchanged


@dataclass(frozen=True)
class MaskingDraws:
    """The random numbers one masking uses (all of length T unless noted).

    Attributes:
        select: uniform [0, 1) per unit: a token is chosen when ``select[unit] < prob``; the unit is the token,
            or with whole-word masking the word id (so only its first ``n_words`` entries matter).
        action: uniform [0, 1) per token: ``< 0.8`` -> ``[MASK]``, ``< 0.9`` -> random token, else unchanged.
        random_ids: the random token per position (used only where ``action`` says so).
    """

    select: torch.Tensor
    action: torch.Tensor
    random_ids: torch.Tensor


def draw_masking(length: int, vocab_size: int, generator: torch.Generator) -> MaskingDraws:
    """Draw in this order: ``select`` (T uniforms), ``action`` (T uniforms), ``random_ids`` (T ints)."""
    select = torch.rand(length, generator=generator)
    action = torch.rand(length, generator=generator)
    random_ids = torch.randint(vocab_size, (length,), generator=generator)
    return MaskingDraws(select, action, random_ids)


def apply_masking(
    ids: Sequence[int] | torch.Tensor,
    special_mask: Sequence[bool] | torch.Tensor,
    mask_id: int,
    draws: MaskingDraws,
    *,
    prob: float = 0.15,
    word_ids: Sequence[int | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked inputs and MLM labels of one sequence for given `draws` (deterministic).

    Args:
        ids: (T,) token ids.
        special_mask: (T,) True for [CLS]/[SEP]/[PAD]/...: never chosen.
        mask_id: the ``[MASK]`` id.
        draws: the random numbers (`draw_masking`).
        prob: the chance that a token (or, with `word_ids`, a word) is chosen.
        word_ids: (T,) the word each token belongs to (0, 1, 2, ... in order; None for special tokens):
            whole-word masking. None = each token on its own.

    Returns:
        (inputs, labels): (T,) long each; labels = the original id where chosen, -100 elsewhere.
    """
    ids_t = torch.as_tensor(ids, dtype=torch.long)
    special = torch.as_tensor(special_mask, dtype=torch.bool)
    if word_ids is None:
        chosen = draws.select < prob  # (T,)
    else:
        if len(word_ids) != len(ids_t):
            raise ValueError(f"word_ids has {len(word_ids)} entries but the sequence has {len(ids_t)} tokens")
        unit = torch.tensor([-1 if w is None else int(w) for w in word_ids], dtype=torch.long)
        chosen_word = draws.select < prob  # (T,) indexed by word id
        chosen = (unit >= 0) & chosen_word[unit.clamp(min=0)]
    chosen &= ~special
    labels = torch.where(chosen, ids_t, torch.full_like(ids_t, IGNORE_INDEX))
    to_mask = chosen & (draws.action < MASK_FRACTION)
    to_random = chosen & (draws.action >= MASK_FRACTION) & (draws.action < MASK_FRACTION + RANDOM_FRACTION)
    inputs = torch.where(to_mask, torch.full_like(ids_t, mask_id), ids_t)
    inputs = torch.where(to_random, draws.random_ids.to(torch.long), inputs)
    return inputs, labels


def mask_tokens(
    ids: Sequence[int] | torch.Tensor,
    special_mask: Sequence[bool] | torch.Tensor,
    mask_id: int,
    vocab_size: int,
    prob: float = 0.15,
    generator: torch.Generator | None = None,
    word_ids: Sequence[int | None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking of one sequence: `draw_masking` then `apply_masking` (see the module docstring).

    Returns:
        (inputs, labels): (T,) long each; labels = the original id at the chosen positions, -100 elsewhere.
    """
    if not 0.0 <= prob <= 1.0:
        raise ValueError(f"masking probability must be in [0, 1], got {prob}")
    draws = draw_masking(len(ids), vocab_size, generator or torch.Generator().manual_seed(0))
    return apply_masking(ids, special_mask, mask_id, draws, prob=prob, word_ids=word_ids)


def masking_seed(seed: int, example_index: int, draw: int, *, dynamic: bool) -> int:
    """The seed of the generator that masks one drawn sequence.

    Static masking (BERT's preprocessing) depends only on (seed, example): the example is masked the same way
    every time it is drawn. Dynamic masking (RoBERTa) also depends on the draw counter, so each draw of the
    same example gets a new mask.
    """
    mixed = (seed * 1_000_003 + example_index) * 1_000_033 + (draw if dynamic else 0)
    return mixed % (2**63 - 1)


def word_ids_from_offsets(
    offsets: Sequence[tuple[int, int]], word_spans: Sequence[tuple[int, int]]
) -> list[int | None]:
    """Word id of every token: the index of the word span holding the token's first character.

    Args:
        offsets: (T,) the (start, end) characters of each token; (0, 0) marks a special token (-> None).
        word_spans: the (start, end) characters of each word, in order.
    """
    out: list[int | None] = []
    for start, end in offsets:
        if start == end:
            out.append(None)
            continue
        out.append(next((w for w, (a, b) in enumerate(word_spans) if a <= start < b), None))
    return out


def jieba_word_spans(text: str) -> list[tuple[int, int]]:
    """The (start, end) character spans of jieba's words of `text` (whitespace words included)."""
    import jieba

    return [(start, end) for _, start, end in jieba.tokenize(text)]


def chinese_word_ids(text: str, offsets: Sequence[tuple[int, int]]) -> list[int | None]:
    """Whole-word ids for a Chinese BERT (one token per character) from jieba's segmentation of `text`.

    Example: "我爱北京天安门" -> jieba 我 / 爱 / 北京 / 天安门 -> word ids [0, 1, 2, 2, 3, 3, 3].
    """
    return word_ids_from_offsets(offsets, jieba_word_spans(text))
