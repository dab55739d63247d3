"""Between the two NER representations: entity names per type (the app's JSON) and BIO tags over tokens.

The chat model answers with names (`{"PER": ["Ada Lovelace"], ...}`); a token-classification head and the
labelled sets use BIO tags over tokens (`["B-PER", "I-PER", "O"]`). `bio_tags` places the names in the tokens
(every occurrence, longest names first, never overlapping), so both systems are scored the same way with
entity-level F1 (seqeval); `entities_from_tags` goes back, so a head's tags print as the app's JSON.

    tokens = ["Ada", "Lovelace", "met", "Babbage", "in", "London"]
    bio_tags(tokens, {"PER": ["Ada Lovelace", "Babbage"], "LOC": ["London"], "ORG": []}, joiner=" ")
    # ["B-PER", "I-PER", "O", "B-PER", "O", "B-LOC"]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from llmlab.apps.templates import detect_lang


def joiner_for(tokens: Sequence[str]) -> str:
    """How a token list joins into its text: no separator for Chinese (character tokens), a space otherwise."""
    return "" if detect_lang("".join(tokens)) == "zh" else " "


def token_offsets(tokens: Sequence[str], joiner: str) -> tuple[str, list[tuple[int, int]]]:
    """(the text the tokens make when joined with `joiner`, each token's (start, end) character offsets)."""
    offsets, position = [], 0
    for i, token in enumerate(tokens):
        if i:
            position += len(joiner)
        offsets.append((position, position + len(token)))
        position += len(token)
    return joiner.join(tokens), offsets


def find_spans(text: str, entities: Mapping[str, Sequence[str]]) -> list[tuple[int, int, str]]:
    """(start, end, type) of every occurrence of every name in `text`; longer names win overlaps, sorted by start."""
    candidates = [(name, kind) for kind, names in entities.items() for name in names if name]
    candidates.sort(key=lambda item: -len(item[0]))
    taken = [False] * len(text)
    spans = []
    for name, kind in candidates:
        start = text.find(name)
        while start >= 0:
            end = start + len(name)
            if not any(taken[start:end]):
                spans.append((start, end, kind))
                taken[start:end] = [True] * (end - start)
            start = text.find(name, end)
    return sorted(spans)


def bio_tags(tokens: Sequence[str], entities: Mapping[str, Sequence[str]], joiner: str = " ") -> list[str]:
    """BIO tags over `tokens` for the named entities (a name covers every token it overlaps)."""
    text, offsets = token_offsets(tokens, joiner)
    tags = ["O"] * len(tokens)
    for start, end, kind in find_spans(text, entities):
        covered = [i for i, (s, e) in enumerate(offsets) if s < end and e > start and e > s]
        for n, i in enumerate(covered):
            if tags[i] == "O":
                tags[i] = ("B-" if n == 0 else "I-") + kind
    return tags


def entities_from_tags(
    tokens: Sequence[str], tags: Sequence[str], joiner: str = " ", kinds: Sequence[str] = ("PER", "LOC", "ORG")
) -> dict[str, list[str]]:
    """Entity names per type from BIO tags (an I- without a matching B- starts an entity, as seqeval reads it)."""
    if len(tokens) != len(tags):
        raise ValueError(f"{len(tokens)} tokens but {len(tags)} tags; give one tag per token")
    found: dict[str, list[str]] = {kind: [] for kind in kinds}
    current: list[str] = []
    kind = None

    def close() -> None:
        if current and kind is not None:
            name = joiner.join(current)
            if name not in found.setdefault(kind, []):
                found[kind].append(name)

    for token, tag in zip(tokens, tags, strict=True):
        prefix, _, label = tag.partition("-")
        if prefix == "I" and label == kind and current:
            current.append(token)
            continue
        close()
        current, kind = ([token], label) if prefix in ("B", "I") else ([], None)
    close()
    return found
