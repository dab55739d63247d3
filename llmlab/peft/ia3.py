"""(IA)^3: Infused Adapter by Inhibiting and Amplifying Inner Activations.

Liu et al. 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than In-Context Learning",
https://arxiv.org/abs/2205.05638. Three learned vectors per layer rescale the keys, the values and the
inner feed-forward activations; they start at 1, so the model is unchanged at initialisation:

    k = l_k * (W_k x)        v = l_v * (W_v x)        ffn = W_down (l_ff * act(...))

As in HF peft, a target layer either rescales its *output* (`ia3_l` of shape (out, 1); k_proj, v_proj) or,
for a feed-forward module, its *input* (`ia3_l` of shape (1, in); down_proj / mlp.c_proj). Both fold into
the weight: output scaling multiplies the rows of W (and the bias), input scaling the columns.

Fused GPT-2 `c_attn` (q, k and v in one linear): we follow HF peft and rescale the whole output, i.e. also
the queries. This deviates slightly from the paper (which leaves queries alone) but keeps the saved
adapter loadable by peft; the query scale is just one more learned vector.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.peft.base import PeftLinear


class IA3Linear(PeftLinear):
    """A frozen linear layer whose output (or input, `feedforward=True`) is rescaled by a learned vector.

    Args:
        base: the linear layer (weight/bias reused, names kept).
        feedforward: scale the input (1, in) instead of the output (out, 1).
        init_ones: start at 1 (True); False draws random scales (tests only).
    """

    def __init__(self, base: nn.Linear, feedforward: bool = False, init_ones: bool = True) -> None:
        super().__init__(base)
        self.feedforward = feedforward
        shape = (1, self.in_features) if feedforward else (self.out_features, 1)
        init = torch.ones(shape) if init_ones else 1.0 + 0.1 * torch.randn(shape)
        self.ia3_l = nn.Parameter(init.to(device=self.weight.device, dtype=self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(.., in) -> (.., out)."""
        if self.disabled or self.merged:
            return self.base_forward(x)
        if self.feedforward:
            return self.base_forward(x * self.ia3_l.flatten())  # scale the inputs (.., in)
        return self.base_forward(x) * self.ia3_l.flatten()  # scale the outputs (.., out), bias included

    def merge(self) -> None:
        """Fold the scales into the weight: rows (and bias) for output scaling, columns for input scaling."""
        if self.merged:
            return
        with torch.no_grad():
            self.weight.mul_(self.ia3_l)  # (out, in) * (out, 1) or (1, in)
            if self.bias is not None and not self.feedforward:
                self.bias.mul_(self.ia3_l.flatten())
        self.merged = True

    def unmerge(self) -> None:
        """Divide the scales back out (exact up to rounding unless a scale is ~0)."""
        if not self.merged:
            return
        with torch.no_grad():
            self.weight.div_(self.ia3_l)
            if self.bias is not None and not self.feedforward:
                self.bias.div_(self.ia3_l.flatten())
        self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, feedforward={self.feedforward}"
