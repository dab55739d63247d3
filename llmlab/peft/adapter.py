"""Bottleneck adapters (Houlsby et al. 2019, "Parameter-Efficient Transfer Learning for NLP",
https://arxiv.org/abs/1902.00751).

A small residual MLP is inserted after a sub-layer's output projection, before the block's residual add:

    h = proj(x)                                   # (B, T, C)   attention or MLP output
    h = h + up(act(down(h)))                      # down: C -> m, up: m -> C, m << C

`up` is zero-initialised, so the adapter is the identity at the start and the model is unchanged. With
`locations=["attn", "mlp"]` this is Houlsby's placement (two adapters per layer); `["mlp"]` alone is the
cheaper Pfeiffer-style variant. Wrapping the output projection (`attn.c_proj`/`o_proj`,
`mlp.c_proj`/`down_proj`) works for every llmlab block without touching its forward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.peft.base import PeftLinear

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu, "tanh": torch.tanh}


class BottleneckLinear(PeftLinear):
    """A frozen output projection followed by a residual bottleneck adapter.

    Args:
        base: the output projection (weight/bias reused, names kept).
        bottleneck_size: adapter width m.
        non_linearity: key of `ACTIVATIONS`.
        dropout: dropout after the nonlinearity.
    """

    def __init__(self, base: nn.Linear, bottleneck_size: int, non_linearity: str = "relu", dropout: float = 0.0):
        super().__init__(base)
        c, dev, dtype = self.out_features, self.weight.device, self.weight.dtype
        self.non_linearity = non_linearity
        self.adapter_down = nn.Linear(c, bottleneck_size, device=dev, dtype=dtype)
        self.adapter_up = nn.Linear(bottleneck_size, c, device=dev, dtype=dtype)
        nn.init.normal_(self.adapter_down.weight, std=0.02)
        nn.init.zeros_(self.adapter_down.bias)
        nn.init.zeros_(self.adapter_up.weight)  # identity at init
        nn.init.zeros_(self.adapter_up.bias)
        self.adapter_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(.., in) -> (.., out)."""
        h = self.base_forward(x)  # (.., C)
        if self.disabled:
            return h
        z = self.adapter_dropout(ACTIVATIONS[self.non_linearity](self.adapter_down(h)))  # (.., m)
        return h + self.adapter_up(z)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, bottleneck={self.adapter_down.out_features}, act={self.non_linearity}"
