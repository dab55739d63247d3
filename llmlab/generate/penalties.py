"""Repetition, frequency and presence penalties: logits processors that discourage repeating tokens.

Two families exist and they use different arithmetic:

    repetition (CTRL):  l_j = l_j / r  if l_j > 0 else l_j * r        for every token j already in the text
    frequency/presence: l_j = l_j - c_j * f - (c_j > 0) * p            c_j = count of j in the completion

The CTRL rule (`transformers`' `RepetitionPenaltyLogitsProcessor`) is multiplicative and applies to every
token seen, prompt included; `r > 1` penalises, `r < 1` encourages repetition. The OpenAI rule is additive:
the frequency penalty grows with each repetition, the presence penalty is a one-off cost for having appeared
at all; both count only the generated tokens (as the OpenAI API and vLLM do), so pass the prompt length.

All processors follow `llmlab.generate.processors.LogitsProcessor`: `(input_ids (B, T), logits (B, V)) -> (B, V)`.

References:
    - CTRL: Keskar et al., 2019, "CTRL: A Conditional Transformer Language Model for Controllable Generation",
      https://arxiv.org/abs/1909.05858 (section 4.1, penalized sampling)
    - OpenAI frequency/presence penalties:
      https://platform.openai.com/docs/advanced-usage/frequency-and-presence-penalties
"""

from __future__ import annotations

import torch

from llmlab.generate.processors import LogitsProcessor


class RepetitionPenaltyProcessor:
    """CTRL repetition penalty: divide positive logits / multiply negative logits of already-seen tokens.

    Identical to `transformers.RepetitionPenaltyLogitsProcessor`: every token present in `input_ids` (the
    prompt too) is penalised once, however often it occurs.

    Args:
        penalty: > 0; 1.0 is a no-op, > 1 discourages repetition (CTRL recommends 1.2).
    """

    def __init__(self, penalty: float) -> None:
        if not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (got {penalty}); use 1.0 for no penalty")
        self.penalty = float(penalty)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        seen = torch.gather(logits, 1, input_ids)  # (B, T) logits of the tokens already in the text
        seen = torch.where(seen < 0, seen * self.penalty, seen / self.penalty)
        return logits.scatter(1, input_ids, seen)


class FrequencyPresencePenaltyProcessor:
    """OpenAI-style penalties: subtract `frequency * count + presence * (count > 0)` from each token's logit.

    Args:
        frequency_penalty: per-occurrence penalty (OpenAI allows -2..2); negative values encourage repetition.
        presence_penalty: one-off penalty for any token that already occurred (OpenAI allows -2..2).
        prompt_len: the first `prompt_len` tokens of `input_ids` (the prompt) are not counted.
    """

    def __init__(self, frequency_penalty: float = 0.0, presence_penalty: float = 0.0, prompt_len: int = 0) -> None:
        self.frequency_penalty = float(frequency_penalty)
        self.presence_penalty = float(presence_penalty)
        self.prompt_len = int(prompt_len)

    def __call__(self, input_ids: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        completion = input_ids[:, self.prompt_len :]  # (B, n)
        counts = torch.zeros_like(logits)  # (B, V)
        counts.scatter_add_(1, completion, torch.ones_like(completion, dtype=logits.dtype))
        return logits - counts * self.frequency_penalty - (counts > 0).to(logits.dtype) * self.presence_penalty


def build_penalties(
    repetition_penalty: float | None = None,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    prompt_len: int = 0,
) -> list[LogitsProcessor]:
    """The penalty processors for the given settings (none when every setting is neutral)."""
    out: list[LogitsProcessor] = []
    if repetition_penalty is not None:
        repetition = RepetitionPenaltyProcessor(repetition_penalty)  # validates the value even when it is 1.0
        if repetition.penalty != 1.0:
            out.append(repetition)
    if frequency_penalty or presence_penalty:
        out.append(FrequencyPresencePenaltyProcessor(frequency_penalty, presence_penalty, prompt_len))
    return out
