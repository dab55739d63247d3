"""Rewards for PPO and GRPO: verifiable reward functions (a Python function that checks a completion) and reward
models (`llmlab.align.reward_model`), summed with weights.

A reward function has the signature ``f(prompts, completions, records) -> list[float] | Tensor``: the prompt
texts, the sampled completion texts and the prompt records (their extra JSONL fields, e.g. ``answer``), one per
completion. Built-ins live in `REWARD_FUNCTIONS`; any importable function is named ``module:function``::

    reward:
      functions: [arithmetic, mypkg.rewards:has_citation]   # verifiable rewards
      model: runs/rm-sentiment                               # and/or a reward model (llmlab align rm)
      weights: [1.0, 1.0, 0.5]                               # the model first, then the functions

Verifiable rewards are the setting of GRPO's reasoning results (DeepSeekMath, Shao et al. 2024,
https://arxiv.org/abs/2402.03300; DeepSeek-R1, https://arxiv.org/abs/2501.12948).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import torch

RewardFn = Callable[[list[str], list[str], list[dict[str, Any]]], "Sequence[float] | torch.Tensor"]

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def first_number(text: str) -> float | None:
    """The first number written in `text` (an optional minus sign, digits, an optional decimal part), or None."""
    match = _NUMBER.search(text.replace(",", ""))
    return float(match.group()) if match else None


def _exact_answers(name: str, completions: list[str], records: list[dict[str, Any]], pick: Any) -> list[float]:
    """1.0 where ``pick(completion)`` equals the record's ``answer`` (as a number), else 0.0."""
    out = []
    for completion, record in zip(completions, records, strict=True):
        if "answer" not in record:
            raise ValueError(f"the {name} reward needs an 'answer' field in every prompt record")
        got, want = pick(completion), first_number(str(record["answer"]))
        out.append(1.0 if got is not None and want is not None and got == want else 0.0)
    return out


def arithmetic_reward(prompts: list[str], completions: list[str], records: list[dict[str, Any]]) -> list[float]:
    """1.0 when the first number in the completion equals the record's ``answer``, else 0.0 (exact checking)."""
    return _exact_answers("arithmetic", completions, records, first_number)


def final_line_number(text: str) -> float | None:
    """The last number on the first non-empty line of `text` (``" 45 + 59 = 104\\n\\nQuestion: ..."`` -> 104)."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    found = _NUMBER.findall(line.replace(",", ""))
    return float(found[-1]) if found else None


def arithmetic_final_reward(prompts: list[str], completions: list[str], records: list[dict[str, Any]]) -> list[float]:
    """1.0 when the last number on the completion's first line equals ``answer`` (the model may write the
    calculation first: ``45 + 59 = 104``), else 0.0."""
    return _exact_answers("arithmetic_final", completions, records, final_line_number)


def length_reward(prompts: list[str], completions: list[str], records: list[dict[str, Any]]) -> list[float]:
    """The completion's length in whitespace-separated words (a toy reward for tests and length-bias checks)."""
    return [float(len(c.split())) for c in completions]


REWARD_FUNCTIONS: dict[str, RewardFn] = {
    "arithmetic": arithmetic_reward,
    "arithmetic_final": arithmetic_final_reward,
    "length": length_reward,
}


def load_reward_function(spec: str) -> RewardFn:
    """A built-in reward (`REWARD_FUNCTIONS`) by name, or ``module:function`` imported.

    Raises:
        ValueError: one line naming `spec` and the fix (unknown name, module not importable, no such function).
    """
    if spec in REWARD_FUNCTIONS:
        return REWARD_FUNCTIONS[spec]
    if ":" not in spec:
        raise ValueError(
            f"unknown reward function {spec!r}; use a built-in ({', '.join(REWARD_FUNCTIONS)}) or module:function"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ValueError(
            f"reward function {spec!r}: cannot import module {module_name!r} ({e}); check PYTHONPATH"
        ) from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"reward function {spec!r}: module {module_name!r} has no function {attr!r}")
    return fn


def _as_tensor(values: Sequence[float] | torch.Tensor, n: int, name: str) -> torch.Tensor:
    """`values` as a (n,) float32 CPU tensor; one-line errors for a wrong count or non-finite values."""
    t = values.detach().float().cpu().reshape(-1) if isinstance(values, torch.Tensor) else None
    if t is None:
        t = torch.tensor([float(v) for v in values], dtype=torch.float32)
    if t.numel() != n:
        raise ValueError(f"reward {name!r} returned {t.numel()} values for {n} completions; return one per completion")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"reward {name!r} returned a non-finite value; return finite floats")
    return t


class RewardSources:
    """The weighted sum of the configured rewards (`llmlab.recipes.align_config.RewardConfig`).

    Callable ``(prompts, completions, records, ended=None) -> (N,) float32`` (CPU). ``ended`` (N,) bool — whether
    each completion stopped with EOS — applies ``missing_eos_penalty`` to the ones cut at ``max_new_tokens``
    (the caller passes `Rollout.ended`). After each call `last_breakdown` holds the mean of every source (and
    ``missing_eos`` when penalised) for the logs: ``reward_model``, ``reward_<function>``.

    Args:
        reward_cfg: a `RewardConfig` (model, functions, weights, missing_eos_penalty).
        tokenizer: unused by the built-ins; kept for reward functions that want token counts.
        device: where the reward model runs.
        scorer: an already loaded reward scorer (anything with ``.score(prompts, completions)``), used instead of
            loading ``reward_cfg.model`` (e.g. one scorer shared by several runs).
    """

    def __init__(
        self, reward_cfg: Any, tokenizer: Any = None, device: torch.device | str = "cpu", *, scorer: Any = None
    ):
        self.tokenizer, self.device = tokenizer, device
        self.missing_eos_penalty = float(reward_cfg.missing_eos_penalty)
        self.scorer = scorer
        self.sources: list[tuple[str, Callable[..., Any]]] = []
        if reward_cfg.model or scorer is not None:
            if self.scorer is None:
                from llmlab.align.reward_model import load_reward_model  # lazy: only runs with a reward model

                self.scorer = load_reward_model(reward_cfg.model, device=device)
            self.sources.append(("model", lambda p, c, r: self.scorer.score(p, c)))
        for spec in reward_cfg.functions:
            self.sources.append((spec.rpartition(":")[2], load_reward_function(spec)))
        if not self.sources:
            raise ValueError("no reward source: set reward.model=<llmlab align rm run> and/or reward.functions=[...]")
        weights = list(reward_cfg.weights) or [1.0] * len(self.sources)
        if len(weights) != len(self.sources):
            raise ValueError(f"reward.weights has {len(weights)} values for {len(self.sources)} reward source(s)")
        self.weights = [float(w) for w in weights]
        self.last_breakdown: dict[str, float] = {}

    @property
    def names(self) -> list[str]:
        """The sources' names (``model`` for the reward model, then each function's name)."""
        return [name for name, _ in self.sources]

    def __call__(
        self,
        prompts: list[str],
        completions: list[str],
        records: list[dict[str, Any]],
        ended: torch.Tensor | Sequence[bool] | None = None,
    ) -> torch.Tensor:
        n = len(completions)
        if len(prompts) != n or len(records) != n:
            raise ValueError(f"{len(prompts)} prompts, {n} completions and {len(records)} records: need one each")
        total = torch.zeros(n, dtype=torch.float32)
        breakdown: dict[str, float] = {}
        for (name, fn), weight in zip(self.sources, self.weights, strict=True):
            values = _as_tensor(fn(list(prompts), list(completions), list(records)), n, name)
            breakdown[f"reward_{name}"] = float(values.mean()) if n else math.nan
            total += weight * values
        if ended is not None and self.missing_eos_penalty:
            cut = ~torch.as_tensor(ended, dtype=torch.bool).reshape(-1).cpu()
            total -= self.missing_eos_penalty * cut.float()
            breakdown["missing_eos"] = float(cut.float().mean()) if n else math.nan
        self.last_breakdown = breakdown
        return total
