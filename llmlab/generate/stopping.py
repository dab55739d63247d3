"""Stopping criteria: decide, after every decoding step, which rows are finished.

A criterion is called as `criterion(input_ids (B, T), prompt_len) -> BoolTensor (B,)` (True = this row is
done); the loop ORs all criteria with the EOS check, pads finished rows and stops when every row is done.

Stop strings are matched on *decoded text*, not on token ids: the same string can be tokenized in many
ways ("\\n\\n" may be one token or two, or the end of a token like ".\\n\\n"), so comparing ids misses
matches that cross token boundaries. `StopStrings` decodes a window of the newest tokens that is long
enough to contain any stop string (a character is at most 4 UTF-8 bytes, so at most 4 byte-level tokens).
Token outputs end with the token that completed the stop string (like `transformers`' `stop_strings`);
text outputs (`llmlab.generate.text`) cut the text right before the stop string, so it is never returned.

Reference: `transformers.StopStringCriteria` (https://huggingface.co/docs/transformers/internal/generation_utils)
and the OpenAI `stop` parameter (the stop sequence is not included in the returned text).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import torch

from llmlab.generate.streamer import Decoder


class StoppingCriteria(Protocol):
    """Anything callable as `(input_ids (B, T), prompt_len) -> BoolTensor (B,)`, True for finished rows."""

    def __call__(self, input_ids: torch.Tensor, prompt_len: int) -> torch.Tensor: ...


class StopOnTokens:
    """Finish a row when its newest token is one of `token_ids` (e.g. ChatML's `<|im_end|>` besides EOS).

    Args:
        token_ids: one id or several.
    """

    def __init__(self, token_ids: int | Iterable[int]) -> None:
        ids = [token_ids] if isinstance(token_ids, int) else [int(t) for t in token_ids]
        if not ids:
            raise ValueError("StopOnTokens needs at least one token id")
        self.token_ids = torch.tensor(ids, dtype=torch.long)

    def __call__(self, input_ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
        if input_ids.size(1) <= prompt_len:
            return torch.zeros(input_ids.size(0), dtype=torch.bool, device=input_ids.device)
        return torch.isin(input_ids[:, -1], self.token_ids.to(input_ids.device))


class StopStrings:
    """Finish a row once its generated text contains any of `stop` (matched across token boundaries).

    Args:
        tokenizer: anything with `decode(list[int]) -> str`.
        stop: the stop strings (non-empty).
    """

    def __init__(self, tokenizer: Decoder, stop: str | Sequence[str]) -> None:
        stops = [stop] if isinstance(stop, str) else list(stop)
        if not stops or any(not isinstance(s, str) or not s for s in stops):
            raise ValueError(f"stop strings must be non-empty strings (got {stops!r})")
        self.tokenizer = tokenizer
        self.stop = stops
        # Enough tokens to hold the longest stop string (+ a few for decoders that need left context).
        self.window = 4 * max(len(s) for s in stops) + 8

    def find(self, text: str) -> int:
        """Index of the earliest stop string in `text`, or -1."""
        hits = [i for i in (text.find(s) for s in self.stop) if i >= 0]
        return min(hits) if hits else -1

    def __call__(self, input_ids: torch.Tensor, prompt_len: int) -> torch.Tensor:
        done = []
        for row in input_ids[:, prompt_len:].tolist():
            done.append(self.find(self.tokenizer.decode(row[-self.window :])) >= 0)
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


def truncate_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut `text` right before the earliest stop string; return (text, whether a stop string was found)."""
    hits = [i for i in (text.find(s) for s in stop) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class StopStringHoldback:
    """Filter streamed text deltas so that no stop string (or part of one) is ever emitted.

    Text that could be the beginning of a stop string is held back until the next delta decides: either the
    stop string completes (everything from its first character on is dropped and `stopped` becomes True) or
    it does not (the held text is released).

    Args:
        stop: the stop strings.
    """

    def __init__(self, stop: Sequence[str]) -> None:
        self.stop = list(stop)
        self.pending = ""
        self.stopped = False

    def put(self, delta: str) -> str:
        """Add a delta; return the text that is safe to show now."""
        if self.stopped:
            return ""
        text = self.pending + delta
        cut, found = truncate_at_stop(text, self.stop)
        if found:
            self.pending, self.stopped = "", True
            return cut
        hold = 0  # longest suffix of `text` that is a proper prefix of some stop string
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:n]):
                    hold = n
                    break
        self.pending = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def end(self) -> str:
        """Release whatever is held back (the stream ended without completing a stop string)."""
        out, self.pending = ("" if self.stopped else self.pending), ""
        return out
