"""`SamplingConfig`: the one definition of the decoding parameters users set.

Every decoding entry point (`generate`, `stream_generate`, `generate_text`, `beam_search`, `ChatSession`)
takes `sampling=SamplingConfig(...)`; like `transformers`' `generate(generation_config=..., **kwargs)` they
also accept the same names as keywords, which override the fields of `sampling` (`resolve_sampling`). The
CLI options of `llmlab generate` and `llmlab chat` are built from these fields (`llmlab.cli.options`), each
command with its own defaults (`GENERATE_SAMPLING`, `CHAT_SAMPLING` below), and `validate()` runs before any
model is loaded. Layer 1 (`llmlab.config`): no torch import, so the CLI builds its options without loading torch.

    sampling = SamplingConfig(max_new_tokens=64, temperature=0.7, top_p=0.9, stop=("\\n\\n",)).validate()
    text = generate_text(model, tokenizer, "Once upon a time", sampling=sampling)

Techniques: nucleus sampling (top-p), Holtzman et al. 2019, https://arxiv.org/abs/1904.09751; min-p,
Nguyen et al. 2024, https://arxiv.org/abs/2407.01082; the CTRL repetition penalty, Keskar et al. 2019,
https://arxiv.org/abs/1909.05858; beam search with a length penalty, Wu et al. 2016,
https://arxiv.org/abs/1609.08144.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

EARLY_STOPPING = {"true": True, "false": False, "never": "never"}


def _opt(flag: str, help: str, short: str | None = None) -> Any:  # noqa: A002 - the CLI help text
    """Field metadata: the CLI flag (and short flag) and help text `llmlab.cli.options` builds the option from."""
    return {"flag": flag, "short": short, "help": help}


@dataclass(frozen=True)
class SamplingConfig:
    """How to pick the next tokens. Defaults are the library's (`temperature=1`, no filtering, no penalty).

    Attributes:
        max_new_tokens: the most tokens to generate (>= 0).
        temperature: 0 = greedy decoding; otherwise logits are divided by it (>= 0, finite).
        top_k: keep the k most likely tokens (None or 0: all).
        top_p: nucleus sampling mass in (0, 1] (None: off).
        min_p: drop tokens less likely than min_p x the top token, in [0, 1] (None: off).
        repetition_penalty: CTRL penalty > 0 on every token seen, prompt included (None or 1.0: off).
        frequency_penalty: OpenAI penalty per occurrence in the generated tokens (0: off).
        presence_penalty: OpenAI penalty once per token in the generated tokens (0: off).
        stop: stop strings (non-empty); the text is cut before the first one.
        seed: seeds a private random generator, so a sample is reproducible (None: torch's global RNG).
        use_cache: decode with a KV cache (same tokens, faster).
        num_beams: beam search with this many beams (1: off).
        length_penalty: beam score = log-prob / length ** length_penalty (finite).
        early_stopping: when beam search stops: True, False or "never".
    """

    max_new_tokens: int = field(default=200, metadata=_opt("--max-new-tokens", "Tokens to generate.", "-n"))
    temperature: float = field(default=1.0, metadata=_opt("--temperature", "Sampling temperature, 0 = greedy.", "-t"))
    top_k: int | None = field(default=None, metadata=_opt("--top-k", "Keep the k most likely tokens, 0 = all."))
    top_p: float | None = field(default=None, metadata=_opt("--top-p", "Nucleus sampling mass in (0, 1]."))
    min_p: float | None = field(
        default=None, metadata=_opt("--min-p", "Drop tokens less likely than min-p x the top token.")
    )
    repetition_penalty: float | None = field(
        default=None, metadata=_opt("--repetition-penalty", "CTRL penalty on every token seen (1.0 = off; try 1.2).")
    )
    frequency_penalty: float = field(
        default=0.0, metadata=_opt("--frequency-penalty", "OpenAI penalty per occurrence in the generated text.")
    )
    presence_penalty: float = field(
        default=0.0, metadata=_opt("--presence-penalty", "OpenAI penalty once per token in the generated text.")
    )
    stop: tuple[str, ...] = field(
        default=(), metadata=_opt("--stop", "Stop before this text (repeat the option for several stop strings).")
    )
    seed: int | None = field(default=None, metadata=_opt("--seed", "Random seed for reproducible samples."))
    use_cache: bool = field(
        default=True, metadata=_opt("--cache/--no-cache", "Use the KV cache (same output, faster).")
    )
    num_beams: int = field(default=1, metadata=_opt("--num-beams", "Beam search with this many beams (1 = off)."))
    length_penalty: float = field(
        default=1.0, metadata=_opt("--length-penalty", "Beam score = log-prob / length^this (>0 favours longer).")
    )
    early_stopping: bool | str = field(
        default=False, metadata=_opt("--early-stopping", "Beam search stops: true, false or never.")
    )

    def validate(self) -> SamplingConfig:
        """Check every field; return self. Raises ValueError with one line naming the option and the fix."""
        _check_int(self, "max_new_tokens", low=0)
        _check_float(self, "temperature", self.temperature, "must be >= 0 (0 = greedy)", lambda v: v >= 0)
        if self.top_k is not None:
            _check_int(self, "top_k", low=0)
        if self.top_p is not None:
            _check_float(self, "top_p", self.top_p, "must be in (0, 1] (1 = off)", lambda v: 0 < v <= 1)
        if self.min_p is not None:
            _check_float(self, "min_p", self.min_p, "must be in [0, 1]", lambda v: 0 <= v <= 1)
        if self.repetition_penalty is not None:
            rule = "must be > 0 (1.0 = off)"
            _check_float(self, "repetition_penalty", self.repetition_penalty, rule, lambda v: v > 0)
        for name in ("frequency_penalty", "presence_penalty", "length_penalty"):
            _check_float(self, name, getattr(self, name), "must be a finite number", lambda v: True)
        if isinstance(self.stop, str) or any(not isinstance(s, str) or not s for s in self.stop):
            raise ValueError(f"{_name('stop')} must be non-empty strings (got {list(self.stop)!r}); drop the empty one")
        if self.seed is not None:
            _check_int(self, "seed", low=0)
        _check_int(self, "num_beams", low=1)
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"{_name('early_stopping')} must be true, false or never (got {self.early_stopping!r})")
        return self

    def replace(self, **changes: Any) -> SamplingConfig:
        """A copy with `changes` applied (unknown names: ValueError listing the known ones)."""
        unknown = sorted(set(changes) - FIELD_NAMES)
        if unknown:
            known = ", ".join(sorted(FIELD_NAMES))
            raise ValueError(f"unknown sampling option(s) {', '.join(unknown)}; known: {known}")
        if isinstance(changes.get("stop"), str):
            changes["stop"] = (changes["stop"],)
        elif changes.get("stop") is not None:
            changes["stop"] = tuple(changes["stop"])
        else:
            changes.pop("stop", None)
        return dataclasses.replace(self, **changes)


FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SamplingConfig))


def _name(field_name: str) -> str:
    """'top_p (--top-p)': the library name and the CLI flag, so a message helps both kinds of user."""
    flag = SamplingConfig.__dataclass_fields__[field_name].metadata["flag"].split("/")[0]
    return f"{field_name} ({flag})"


def _check_int(config: SamplingConfig, name: str, low: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{_name(name)} must be an integer >= {low} (got {value!r})")


def _check_float(config: SamplingConfig, name: str, value: Any, rule: str, ok: Any) -> None:
    """ValueError unless `value` is a finite real number for which `ok(value)` holds (NaN never passes)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not ok(value):
        raise ValueError(f"{_name(name)} {rule} (got {value!r})")


def resolve_sampling(
    sampling: SamplingConfig | None, overrides: Mapping[str, Any], max_new_tokens: int | None = None
) -> SamplingConfig:
    """`sampling` (default: `SamplingConfig()`) with keyword `overrides` and a positional `max_new_tokens`
    applied, validated. The one place decoding entry points turn their arguments into a config."""
    config = sampling if sampling is not None else SamplingConfig()
    changes = dict(overrides)
    if max_new_tokens is not None:
        changes["max_new_tokens"] = max_new_tokens
    if changes:
        config = config.replace(**changes)
    return config.validate()


def parse_early_stopping(value: str | bool) -> bool | str:
    """The CLI spelling of `early_stopping` ('true', 'false', 'never') as the config value."""
    if isinstance(value, bool):
        return value
    if value.lower() not in EARLY_STOPPING:
        raise ValueError(f"--early-stopping must be true, false or never (got {value!r})")
    return EARLY_STOPPING[value.lower()]


# `llmlab generate`'s decoding defaults and options (every field).
GENERATE_SAMPLING = SamplingConfig(max_new_tokens=200, temperature=0.8, top_k=200)
GENERATE_OPTIONS = tuple(f.name for f in dataclasses.fields(SamplingConfig))
# `llmlab chat`'s (and `ChatSession`'s) defaults; its options leave out stop strings, --no-cache and beam search:
# a chat reply ends at the template's end of turn.
CHAT_SAMPLING = SamplingConfig(max_new_tokens=256, temperature=0.7, top_k=50, top_p=0.9)
CHAT_OPTIONS = tuple(
    n for n in GENERATE_OPTIONS if n not in {"stop", "use_cache", "num_beams", "length_penalty", "early_stopping"}
)
# Speculative decoding: draft tokens per step by default; the dtypes `llmlab chat --dtype` accepts.
DEFAULT_DRAFT_TOKENS = 5
INFERENCE_DTYPES = ("float32", "bfloat16", "float16")
