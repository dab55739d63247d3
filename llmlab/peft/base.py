"""The common base of PEFT layers that replace an `nn.Linear` while keeping its parameter names.

As in torchtune's `LoRALinear`, the wrapper owns the *same* `weight` and `bias` parameters as the linear it
replaces (no `base_layer.` prefix), so `model.state_dict()` keeps the base model's names and a base
checkpoint still loads into a model with adapters (`load_state_dict(sd, strict=False)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PeftLinear(nn.Module):
    """A frozen linear layer `y = x W^T + b` plus a method-specific trainable part.

    Attributes:
        weight: (out, in), the base weight (the very Parameter of the wrapped `nn.Linear`).
        bias: (out,) or None.
        disabled: when True the layer computes the base linear only (adapters off).
        merged: the adapter is currently folded into `weight` (LoRA, IA3).
    """

    def __init__(self, base: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        for attr in ("residual_proj",):  # init markers used by the models
            if hasattr(base, attr):
                setattr(self, attr, getattr(base, attr))
        self.disabled = False
        self.merged = False

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen base linear, (.., in) -> (.., out)."""
        return F.linear(x, self.weight, self.bias)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """The trainable parameters this layer adds (not `weight`/`bias`)."""
        return [p for n, p in self.named_parameters() if n not in ("weight", "bias")]

    def merge(self) -> None:
        """Fold the adapter into `weight` (only for methods that can)."""
        raise ValueError(f"{type(self).__name__} cannot be merged into the base weight")

    def unmerge(self) -> None:
        """Undo `merge`."""
        raise ValueError(f"{type(self).__name__} cannot be merged into the base weight")

    def to_linear(self) -> nn.Linear:
        """A plain `nn.Linear` with the current (merged or base) weight, sharing the Parameters."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        lin.weight = self.weight
        lin.bias = self.bias
        if hasattr(self, "residual_proj"):
            lin.residual_proj = self.residual_proj
        return lin

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, merged={self.merged}"
