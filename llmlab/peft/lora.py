"""LoRA, rsLoRA and DoRA linear layers.

LoRA (Hu et al. 2021, https://arxiv.org/abs/2106.09685) freezes a weight W (out, in) and learns a
low-rank update:

    y = x W^T + b + s * dropout(x) A^T B^T          A: (r, in), B: (out, r), s = alpha / r

B starts at zero, so the model is unchanged at initialisation. rsLoRA (Kalajdzievski 2023,
https://arxiv.org/abs/2312.03732) uses s = alpha / sqrt(r), which keeps the update's scale stable as r grows.

DoRA (Liu et al. 2024, https://arxiv.org/abs/2402.09353) splits the weight into a magnitude and a direction
and trains the magnitude m (out,) directly, the direction through LoRA:

    W' = m * (W + s B A) / ||W + s B A||_row        (the norm of each output row, over the input dim)

m starts at ||W||_row, so again the output is unchanged at init. As in the paper (Sec. 4.3) and in peft,
the norm is detached from the graph, which saves memory and changes the gradient only slightly.

Parameter names follow peft (`lora_A.weight`, `lora_B.weight`, `lora_magnitude_vector`), so the saved
adapter keys are peft's.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.peft.base import PeftLinear


class LoRALinear(PeftLinear):
    """A frozen `nn.Linear` with a LoRA (optionally DoRA) update.

    Args:
        base: the linear layer to adapt (its `weight`/`bias` Parameters are reused, names kept).
        r: rank.
        scaling: the factor s (`lora_alpha / r`, or `/ sqrt(r)` for rsLoRA).
        dropout: dropout on the LoRA path's input.
        use_dora: add DoRA's magnitude vector.
        init_zero: B = 0 (True, the standard init) or random B (False, for tests).
    """

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        scaling: float,
        dropout: float = 0.0,
        use_dora: bool = False,
        init_zero: bool = True,
    ) -> None:
        super().__init__(base)
        self.r, self.scaling, self.use_dora = r, scaling, use_dora
        dev, dtype = self.base_weight_device_dtype()
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.lora_A = nn.Linear(self.in_features, r, bias=False, device=dev, dtype=dtype)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, device=dev, dtype=dtype)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # as nn.Linear / peft
        if init_zero:
            nn.init.zeros_(self.lora_B.weight)
        else:
            nn.init.normal_(self.lora_B.weight, std=0.02)
        self.lora_magnitude_vector: nn.Parameter | None = None
        self._merge_norm: torch.Tensor | None = None  # DoRA: the row norm used by the last merge
        if use_dora:
            with torch.no_grad():
                norm = self._row_norm(self.dequantized_weight(), self.delta_weight())
            self.lora_magnitude_vector = nn.Parameter(norm.clone())  # (out,)

    # -- the base weight (QLoRA overrides these to dequantize) ------------------------------------------
    def base_weight_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        return self.weight.device, self.weight.dtype

    def dequantized_weight(self) -> torch.Tensor:
        """The base weight W (out, in) in compute precision."""
        return self.weight

    # -- LoRA ---------------------------------------------------------------------------------------------
    def delta_weight(self) -> torch.Tensor:
        """s * B A, (out, in)."""
        return self.scaling * (self.lora_B.weight @ self.lora_A.weight)

    @staticmethod
    def _row_norm(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """||W + delta|| over the input dim, (out,) — DoRA's weight norm (as peft's `get_weight_norm`)."""
        return torch.linalg.norm(weight + delta, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(.., in) -> (.., out)."""
        result = self.base_forward(x)
        if self.disabled or self.merged:
            return result
        xd = self.lora_dropout(x)
        lora = self.lora_B(self.lora_A(xd.to(self.lora_A.weight.dtype))) * self.scaling  # (.., out)
        if not self.use_dora:
            return result + lora.to(result.dtype)
        # DoRA: y = (m / ||W + sBA||) * (W x + s B A x) + b, with the norm detached.
        weight = self.dequantized_weight()
        norm = self._row_norm(weight, self.delta_weight().detach()).detach()  # (out,)
        mag_scale = self.lora_magnitude_vector / norm  # (out,)
        if isinstance(self.lora_dropout, nn.Identity):
            base_no_bias = result - self.bias if self.bias is not None else result
        else:
            base_no_bias = F.linear(xd, weight)
        return result + (mag_scale - 1) * base_no_bias + mag_scale * lora

    def merge(self) -> None:
        """W <- W + s B A (DoRA: W <- m * (W + s B A) / ||W + s B A||)."""
        if self.merged:
            return
        with torch.no_grad():
            delta = self.delta_weight().to(self.weight.dtype)
            if self.use_dora:
                self._merge_norm = self._row_norm(self.weight, delta)
                scale = (self.lora_magnitude_vector / self._merge_norm)[:, None]
                self.weight.copy_(scale * (self.weight + delta))
            else:
                self.weight.add_(delta)
        self.merged = True

    def unmerge(self) -> None:
        """Restore the base weight (up to float rounding)."""
        if not self.merged:
            return
        with torch.no_grad():
            delta = self.delta_weight().to(self.weight.dtype)
            if self.use_dora:
                scale = (self.lora_magnitude_vector / self._merge_norm)[:, None]
                self.weight.copy_(self.weight / scale - delta)
            else:
                self.weight.sub_(delta)
        self.merged = False

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, scaling={self.scaling:g}, dora={self.use_dora}"
