"""Logits processors: small callables that reshape the next-token distribution before sampling.

Every processor takes the tokens so far and the next-token logits and returns new logits:

    processor(input_ids: LongTensor (B, T), logits: FloatTensor (B, V)) -> FloatTensor (B, V)

They are chained by `LogitsProcessorList`, so new decoding controls (repetition penalties, bad-word
lists, ...) plug in without touching the decoding loop. Filtering processors set removed tokens to
`-inf`, which `softmax` turns into probability 0.

References:
    - Top-k sampling: Fan et al., 2018, "Hierarchical Neural Story Generation", https://arxiv.org/abs/1805.04833
    - Nucleus (top-p) sampling: Holtzman et al., 2019, "The Curious Case of Neural Text Degeneration",
      https://arxiv.org/abs/1904.09751
    - Temperature: Ackley, Hinton & Sejnowski, 1985 (Boltzmann distribution); used for LMs since Graves, 2013,
      https://arxiv.org/abs/1308.0850
    - Min-p sampling: Nguyen et al., 2024, "Turning Up the Heat: Min-p Sampling for Creative and Coherent LLM
      Outputs", https://arxiv.org/abs/2407.01082
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import torch


class LogitsProcessor(Protocol):
    """Anything callable as `(input_ids (B, T), logits (B, V)) -> logits (B, V)`."""

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor: ...


class LogitsProcessorList(list):
    """A list of processors applied in order: `logits = p_n(..., p_1(input_ids, logits))`."""

    def __init__(self, processors: Iterable[LogitsProcessor] = ()) -> None:
        super().__init__(processors)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        for processor in self:
            logits = processor(input_ids, logits)
        return logits


class TemperatureProcessor:
    """Divide the logits by a temperature: < 1 sharpens the distribution, > 1 flattens it.

    Temperature 0 means greedy decoding; it is handled by the sampler (argmax), not here, because dividing
    by 0 is undefined.

    Args:
        temperature: a strictly positive float.
    """

    def __init__(self, temperature: float) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0 for TemperatureProcessor (got {temperature}); use 0 via greedy")
        self.temperature = float(temperature)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        return logits / self.temperature


class TopKProcessor:
    """Keep exactly the `k` highest logits per row and set every other logit to `-inf`.

    Uses `torch.topk` indices rather than a value threshold, so ties at the k-th value never let more than
    `k` candidates through. `k` larger than the vocabulary keeps everything.

    Args:
        top_k: number of candidates to keep, >= 1.
    """

    def __init__(self, top_k: int) -> None:
        if int(top_k) < 1:
            raise ValueError(f"top_k must be >= 1 (got {top_k}); leave it unset to disable top-k filtering")
        self.top_k = int(top_k)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        k = min(self.top_k, logits.size(-1))
        if k == logits.size(-1):
            return logits
        values, indices = torch.topk(logits, k, dim=-1)  # (B, k)
        filtered = torch.full_like(logits, float("-inf"))
        return filtered.scatter(-1, indices, values)


class TopPProcessor:
    """Nucleus filtering: keep the smallest set of most likely tokens whose total probability is >= `top_p`.

    Tokens are sorted by probability (descending); a token is kept when the probability mass *before* it is
    still below `top_p`. So the token whose probability makes the cumulative sum cross `top_p` is kept,
    and the most likely token is always kept (even for a tiny `top_p`). `top_p == 1.0` keeps everything.

    Args:
        top_p: probability mass in (0, 1].
    """

    def __init__(self, top_p: float) -> None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1] (got {top_p}); leave it unset to disable nucleus filtering")
        self.top_p = float(top_p)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        if self.top_p >= 1.0:
            return logits
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of strictly more likely tokens
        remove_sorted = mass_before >= self.top_p
        remove_sorted[..., 0] = False  # always keep the most likely token
        remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)  # back to vocabulary order
        return logits.masked_fill(remove, float("-inf"))


class MinPProcessor:
    """Min-p filtering: drop tokens whose probability is below `min_p` times the most likely token's probability.

    The threshold scales with the model's confidence: a peaked distribution keeps few candidates, a flat one
    keeps many (Nguyen et al., 2024). The most likely token always survives (its probability is the maximum).

    Args:
        min_p: relative threshold in [0, 1]; 0 keeps everything.
    """

    def __init__(self, min_p: float) -> None:
        if not 0.0 <= min_p <= 1.0:
            raise ValueError(f"min_p must be in [0, 1] (got {min_p}); leave it unset to disable min-p filtering")
        self.min_p = float(min_p)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        probs = torch.softmax(logits.float(), dim=-1)  # (B, V)
        threshold = self.min_p * probs.max(dim=-1, keepdim=True).values  # (B, 1)
        return logits.masked_fill(probs < threshold, float("-inf"))


def build_processors(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    extra: Iterable[LogitsProcessor] = (),
    min_p: float | None = None,
) -> LogitsProcessorList:
    """The standard chain, in the order `transformers` applies it: extra, temperature, top-k, top-p, min-p.

    `extra` (e.g. repetition penalties) runs first, on the raw logits. Temperature 0 (greedy) adds no
    processor: argmax is unchanged by temperature, top-k or top-p (each always keeps the most likely token).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (got {temperature}); use 0 for greedy decoding")
    filters = [TopKProcessor(top_k)] if top_k is not None else []  # built even when greedy: validates arguments
    filters += [TopPProcessor(top_p)] if top_p is not None else []
    filters += [MinPProcessor(min_p)] if min_p is not None else []
    chain = LogitsProcessorList(extra)
    if temperature == 0:
        return chain
    if temperature != 1.0:
        chain.append(TemperatureProcessor(temperature))
    chain.extend(filters)
    return chain
