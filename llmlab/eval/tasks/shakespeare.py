"""`shakespeare_cloze`: pick the last word of a line of held-out Shakespeare among 4 candidates.

Held out from what llmlab pretrains on. The default play, The Two Gentlemen of Verona (the `shakespeare`
package's `two_gentlemen_of_verona_gut.txt`, Project Gutenberg text), is

- in the validation part of `llmlab quickstart`: quickstart prepares the 42 plays in file-name order with
  `split.mode=tail` and `val_fraction` 0.1, so the last 10% of the characters (the end of Troilus and
  Cressida, Twelfth Night, The Two Gentlemen of Verona, The Winter's Tale) are never trained on; this play
  lies at 95-97% of the raw characters, inside that tail with margin for what cleaning removes
  (`quickstart --fast` trains on the first 120,000 characters only);
- absent from tinyshakespeare, which configs/data/tinyshakespeare-char.yaml and configs/pretrain/*.yaml use
  (no VALENTINE/PROTEUS/SPEED/LAUNCE speech in it; The Winter's Tale, in contrast, is in its training part).

configs/data/shakespeare-bpe.yaml splits whole plays at random (seed 1337) and trains on this one; its
validation plays are henry_iv_part_2, julius_caesar, lovers_complaint and romeo_and_juliet, so evaluate
such a model with `options: {play: julius_caesar}` (Julius Caesar is not in tinyshakespeare either).

A document is one verse line of at least `MIN_WORDS` words ending in a lower-case word of 3+ letters: the
context is the speaker's name, up to `CONTEXT_LINES` earlier lines of the same speech and the line without
its last word; the choices are that word and 3 other line-final words of the play (seeded draw). The first
`FEWSHOT_FRACTION` of the play's speeches give the few-shot pool, the rest the test documents, so the two
never share text. Documents: {"context": str, "choices": [4 words], "label": index of the right word}.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

DEFAULT_PLAY = "two_gentlemen_of_verona"
MIN_WORDS = 5
CONTEXT_LINES = 3
FEWSHOT_FRACTION = 0.15
N_CHOICES = 4
_SPEAKER = re.compile(r"^([A-Z][A-Z' ]*[A-Z])\.$")  # "VALENTINE." / "FIRST OUTLAW."
_LAST_WORD = re.compile(r"^(.*\S)\s+([a-z][a-z']*[a-z])[^A-Za-z]*$")  # line body, then the last word


def play_path(play: str) -> Path:
    """The Gutenberg text of `play` in the `shakespeare` package; FileNotFoundError listing the plays."""
    from llmlab.data.sources import BUILTIN_CORPORA

    files = {path.name.removesuffix("_gut.txt"): path for path in BUILTIN_CORPORA["shakespeare"]()}
    if play not in files:
        raise FileNotFoundError(f"no Shakespeare play {play!r}; choose one of: {', '.join(sorted(files))}")
    return files[play]


def speeches(text: str) -> list[tuple[str, list[str]]]:
    """(speaker, verse lines) of every speech: a blank-line-separated block opening with "NAME." on its own line.

    Stage directions (lines with brackets) are dropped.
    """
    found = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in block.strip().splitlines()]
        match = _SPEAKER.match(lines[0]) if lines else None
        if match:
            found.append((match.group(1), [line for line in lines[1:] if line and "[" not in line and "]" not in line]))
    return found


def cloze_items(play_speeches: list[tuple[str, list[str]]]) -> list[tuple[str, str]]:
    """(context, answer word) for every usable line of these speeches, in text order."""
    items = []
    for speaker, lines in play_speeches:
        for index, line in enumerate(lines):
            match = _LAST_WORD.match(line)
            if match is None or len(line.split()) < MIN_WORDS or len(match.group(2).replace("'", "")) < 3:
                continue
            earlier = lines[max(0, index - CONTEXT_LINES) : index]
            items.append(("\n".join([f"{speaker.title()}:", *earlier, match.group(1)]), match.group(2)))
    return items


def _documents(items: list[tuple[str, str]], size: int, vocabulary: list[str], rng: random.Random) -> list[dict]:
    docs: list[dict[str, Any]] = []
    for context, answer in rng.sample(items, size):
        distractors = rng.sample([w for w in vocabulary if w != answer], N_CHOICES - 1)
        choices = [answer, *distractors]
        rng.shuffle(choices)
        docs.append({"context": context, "choices": choices, "label": choices.index(answer)})
    return docs


def build_shakespeare_cloze(
    test_size: int = 200, fewshot_size: int = 50, seed: int = 0, play: str = DEFAULT_PLAY
) -> tuple[list[dict], list[dict]]:
    """(test_docs, fewshot_docs) of the cloze task on `play` (see the module docstring for why it is held out)."""
    all_speeches = speeches(play_path(play).read_text(encoding="utf-8"))
    cut = int(len(all_speeches) * FEWSHOT_FRACTION)
    fewshot_items, test_items = cloze_items(all_speeches[:cut]), cloze_items(all_speeches[cut:])
    if not 1 <= test_size <= len(test_items) or not 0 <= fewshot_size <= len(fewshot_items):
        raise ValueError(
            f"shakespeare_cloze on {play}: test_size must be 1..{len(test_items)} and fewshot_size "
            f"0..{len(fewshot_items)} (got {test_size}, {fewshot_size})"
        )
    vocabulary = sorted({answer for _, answer in fewshot_items + test_items})
    rng = random.Random(seed)
    return _documents(test_items, test_size, vocabulary, rng), _documents(fewshot_items, fewshot_size, vocabulary, rng)
