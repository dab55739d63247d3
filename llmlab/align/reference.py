"""The reference policy of DPO, PPO and GRPO: the model the policy is kept close to (by a KL term or the
DPO implicit reward).

Two ways to have it, chosen automatically by `ReferencePolicy`:

- **adapters off** — for a PEFT policy (LoRA, IA3, adapters, ...) the reference is the same model with its
  adapters disabled (`llmlab.peft.adapters_disabled`): no second copy of the weights in memory (trl does the
  same with `peft_model.disable_adapter()`).
- **frozen copy** — for full fine-tuning, a deep copy taken before training, frozen, in eval mode.

Its log-probabilities are computed under `torch.no_grad()` and in eval mode (no dropout), whatever mode the
policy is in.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
from torch import nn

from llmlab.align.logprobs import TokenLogprobs, token_logprobs, unwrap
from llmlab.peft import adapters_disabled
from llmlab.peft.base import PeftLinear

REFERENCE_MODES = ("auto", "adapters", "copy")


def has_adapters(model: nn.Module) -> bool:
    """Whether `model` carries PEFT layers that `adapters_disabled` can switch off (or soft prompts/prefixes)."""
    return any(isinstance(m, PeftLinear) for m in model.modules()) or getattr(model, "peft_config", None) is not None


class ReferencePolicy:
    """The frozen reference for a policy (see the module docstring).

    Args:
        policy: the policy, already carrying its PEFT layers if any (unwrapped; build this before DDP).
        mode: auto (adapters when the policy has PEFT layers, else a frozen copy) | adapters | copy.
    """

    def __init__(self, policy: nn.Module, mode: str = "auto") -> None:
        if mode not in REFERENCE_MODES:
            raise ValueError(f"unknown reference mode {mode!r}; choose one of: {', '.join(REFERENCE_MODES)}")
        policy = unwrap(policy)
        if mode == "auto":
            mode = "adapters" if has_adapters(policy) else "copy"
        if mode == "adapters" and not has_adapters(policy):
            raise ValueError("reference mode 'adapters' needs a PEFT policy (method lora, ia3, ...); use 'copy'")
        self.mode, self.policy = mode, policy
        self.copy: nn.Module | None = None
        if mode == "copy":
            self.copy = copy.deepcopy(policy).eval().requires_grad_(False)

    @contextlib.contextmanager
    def model(self) -> Iterator[nn.Module]:
        """``with ref.model() as m:`` the reference model, in eval mode, for use under no_grad."""
        if self.copy is not None:
            yield self.copy
            return
        was_training = self.policy.training
        self.policy.eval()
        try:
            with adapters_disabled(self.policy):
                yield self.policy
        finally:
            self.policy.train(was_training)

    def to(self, device: torch.device | str) -> ReferencePolicy:
        if self.copy is not None:
            self.copy.to(device)
        return self

    @torch.no_grad()
    def token_logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_mask: torch.Tensor, **kw: object
    ) -> TokenLogprobs:
        """`llmlab.align.logprobs.token_logprobs` under the reference (no gradient)."""
        with self.model() as m:
            return token_logprobs(m, input_ids, attention_mask, response_mask, **kw)  # type: ignore[arg-type]
