"""Incremental detokenization: turn a stream of token ids into a stream of text deltas.

Decoding token by token is wrong for byte-level BPE: one Chinese character is 3 UTF-8 bytes and may be
split over two or three tokens, so decoding a single token gives U+FFFD (the replacement character).
Decoding only the newest token also breaks tokenizers whose decoding depends on neighbours (WordPiece
`##` joins, SentencePiece's leading-space rule).

The standard fix (used by `transformers`' TextStreamer and vLLM's detokenizer) keeps two offsets into the
token list: text is decoded over a short window `ids[prefix_offset:]`, and the part beyond the already
emitted `ids[prefix_offset:read_offset]` is the new delta. While the decoded window ends with U+FFFD the
character is incomplete, so nothing is emitted and the tokens are held back until the next one completes it.
Decoding a short window keeps every step O(window) instead of re-decoding the whole sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

REPLACEMENT_CHAR = "\ufffd"


class Decoder(Protocol):
    """Anything with `decode(ids: list[int]) -> str` (llmlab's Tokenizer, a `tokenizers.Tokenizer`, ...)."""

    def decode(self, ids: list[int]) -> str: ...


class TextStreamer:
    """Accumulate token ids and return the newly completed text after each one.

    Example:
        >>> streamer = TextStreamer(tokenizer)
        >>> for tok in stream_generate(model, ids, 50):
        ...     print(streamer.put(int(tok[0])), end="", flush=True)
        >>> print(streamer.end())

    The concatenation of every `put` delta and the final `end()` equals `tokenizer.decode(all_ids)` for
    tokenizers whose decoding of a suffix is a suffix of the decoding (byte-level BPE, char-level); no delta
    ends in a split character.

    Args:
        tokenizer: provides `decode(list[int]) -> str`.
        prompt_ids: token ids already shown to the user (context for the first deltas, never emitted).
    """

    def __init__(self, tokenizer: Decoder, prompt_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = [int(i) for i in prompt_ids]
        # ids[prefix_offset:read_offset] were decoded and emitted already; they give the context for the next delta.
        self.prefix_offset = max(len(self.ids) - 5, 0)
        self.read_offset = len(self.ids)

    def put(self, token_id: int) -> str:
        """Add one token id; return the text it completes ('' while a character is still incomplete)."""
        self.ids.append(int(token_id))
        return self._advance(final=False)

    def put_many(self, token_ids: Iterable[int]) -> str:
        """Add several ids; return the text they complete."""
        self.ids.extend(int(i) for i in token_ids)
        return self._advance(final=False)

    def end(self) -> str:
        """Flush whatever is held back (an incomplete character at the very end decodes to U+FFFD)."""
        return self._advance(final=True)

    def _advance(self, final: bool) -> str:
        prefix_text = self.tokenizer.decode(self.ids[self.prefix_offset : self.read_offset])
        new_text = self.tokenizer.decode(self.ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or (new_text.endswith(REPLACEMENT_CHAR) and not final):
            return ""  # nothing new yet, or the last character is still incomplete: hold the tokens back
        delta = new_text[len(prefix_text) :]
        self.prefix_offset = self.read_offset
        self.read_offset = len(self.ids)
        return delta


def stream_text(tokenizer: Decoder, token_ids: Iterable[int], prompt_ids: Sequence[int] = ()) -> Iterator[str]:
    """Yield the non-empty text deltas of `token_ids` (e.g. the ints from `stream_generate`), then the flush."""
    streamer = TextStreamer(tokenizer, prompt_ids)
    for token_id in token_ids:
        delta = streamer.put(token_id)
        if delta:
            yield delta
    tail = streamer.end()
    if tail:
        yield tail
