"""QLoRA: LoRA on a frozen 4-bit NormalFloat (NF4) base weight.

QLoRA (Dettmers et al. 2023, https://arxiv.org/abs/2305.14314) stores the frozen base weight in 4 bits and
dequantizes it on the fly in every forward; only the LoRA matrices are trained (in full precision):

    y = x dequant(W_nf4)^T + b + s * x A^T B^T

NF4 quantization, blockwise: each block of `blocksize` consecutive weights is scaled by its absolute
maximum into [-1, 1] and every value is replaced by the index of the nearest of 16 levels — the quantiles of
a standard normal (`NF4_CODE`, the same table as bitsandbytes) — two 4-bit indices per byte. Double
quantization quantizes the fp32 absmax scales themselves: here to int8 in blocks of 256 after subtracting
their mean (the paper uses an 8-bit float code; int8 is a simpler stand-in with the same memory).

Memory of the base weight per parameter: 4 bits + 32 / blocksize bits of scale (0.5 bit at blocksize 64,
about 0.13 bit with double quantization), versus 32 bits in fp32. The packing and the code table match
`bitsandbytes.functional.quantize_4bit(..., quant_type="nf4")` byte for byte (tested), but the
dequantization is done here in plain torch, so QLoRA runs on any device without bitsandbytes.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.peft.lora import LoRALinear

# The 16 NF4 levels (quantiles of N(0, 1) normalised to [-1, 1], with an exact 0), as in bitsandbytes.
NF4_CODE = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
    -0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
    0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
    0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)  # fmt: skip
DQ_BLOCKSIZE = 256  # blocks of absmax values for double quantization


def quantize_nf4(weight: torch.Tensor, blocksize: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Blockwise NF4 quantization.

    Args:
        weight: any shape, numel divisible by 2.
        blocksize: weights per absmax scale.

    Returns:
        packed (numel // 2,) uint8, two 4-bit indices per byte (first value in the high nibble), and
        absmax (n_blocks,) float32.
    """
    flat = weight.detach().float().flatten()
    n = flat.numel()
    if n % 2:
        raise ValueError(f"NF4 needs an even number of weights, got {n}")
    pad = (-n) % blocksize
    blocks = F.pad(flat, (0, pad)).view(-1, blocksize)  # (n_blocks, blocksize)
    absmax = blocks.abs().amax(dim=1)  # (n_blocks,)
    normed = blocks / absmax.clamp_min(torch.finfo(torch.float32).tiny)[:, None]  # in [-1, 1]
    code = torch.tensor(NF4_CODE, device=flat.device)
    midpoints = (code[1:] + code[:-1]) / 2  # (15,) decision boundaries
    idx = torch.bucketize(normed.flatten()[:n], midpoints).to(torch.uint8)  # (n,) in 0..15
    packed = (idx[0::2] << 4) | idx[1::2]  # (n // 2,)
    return packed, absmax


def dequantize_nf4(packed: torch.Tensor, absmax: torch.Tensor, shape: torch.Size, blocksize: int) -> torch.Tensor:
    """Inverse of `quantize_nf4`: (numel // 2,) uint8 + (n_blocks,) scales -> float32 tensor of `shape`."""
    idx = torch.stack([packed >> 4, packed & 0x0F], dim=1).flatten().long()  # (n,)
    values = torch.tensor(NF4_CODE, device=packed.device)[idx]
    n = values.numel()
    scales = absmax.float().repeat_interleave(blocksize)[:n]
    return (values * scales).view(shape)


def quantize_absmax(absmax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Double quantization of the scales: (absmax - mean) to int8 in blocks of `DQ_BLOCKSIZE`.

    Returns:
        q (n_blocks,) int8, scale (n_dq_blocks,) float32, offset () float32.
    """
    offset = absmax.mean()
    centred = absmax - offset
    n = centred.numel()
    blocks = F.pad(centred, (0, (-n) % DQ_BLOCKSIZE)).view(-1, DQ_BLOCKSIZE)
    scale = blocks.abs().amax(dim=1).clamp_min(1e-12) / 127.0  # (n_dq_blocks,)
    q = torch.round(blocks / scale[:, None]).to(torch.int8).flatten()[:n]
    return q, scale, offset


def dequantize_absmax(q: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Inverse of `quantize_absmax`."""
    return q.float() * scale.repeat_interleave(DQ_BLOCKSIZE)[: q.numel()] + offset


class QLoRALinear(LoRALinear):
    """LoRA over a frozen NF4 base weight; `weight` is replaced by quantized buffers.

    Buffers: `weight_nf4` (packed uint8), `weight_absmax` (fp32, or int8 with double quantization plus
    `weight_absmax_scale` and `weight_absmax_offset`). The bias (if any) stays in full precision and frozen.

    Args:
        base: the linear layer to quantize and adapt.
        r, scaling: as `LoRALinear`.
        blocksize: NF4 block size.
        double_quant: quantize the absmax scales to int8.
        compute_dtype: dtype of the dequantized weight and of the LoRA matrices.
        lora_options: `LoRALinear`'s `dropout`, `use_dora`, `init_zero`.
    """

    def __init__(
        self,
        base: nn.Linear,
        r: int,
        scaling: float,
        *lora_args: Any,
        blocksize: int = 64,
        double_quant: bool = True,
        compute_dtype: torch.dtype = torch.float32,
        **lora_options: Any,
    ) -> None:
        self._compute_dtype = compute_dtype
        super().__init__(base, r, scaling, *lora_args, **lora_options)
        self.blocksize, self.double_quant = blocksize, double_quant
        self.weight_shape = tuple(self.weight.shape)
        packed, absmax = quantize_nf4(self.weight, blocksize)
        del self.weight  # the full-precision weight is gone: only the 4-bit copy is kept
        self.register_buffer("weight_nf4", packed)
        if double_quant:
            q, scale, offset = quantize_absmax(absmax)
            self.register_buffer("weight_absmax", q)
            self.register_buffer("weight_absmax_scale", scale)
            self.register_buffer("weight_absmax_offset", offset)
        else:
            self.register_buffer("weight_absmax", absmax)
        if self.use_dora:  # re-initialise the magnitude from the *quantized* weight so the output is unchanged
            with torch.no_grad():
                self.lora_magnitude_vector.copy_(torch.linalg.norm(self.dequantized_weight(), dim=1))

    def base_weight_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        return self.weight.device, self._compute_dtype

    def dequantized_weight(self) -> torch.Tensor:
        """The base weight (out, in) dequantized to the compute dtype."""
        if "weight" in self._parameters or "weight" in self.__dict__:  # during __init__, before quantization
            return self.weight.to(self._compute_dtype)
        absmax = self.weight_absmax
        if self.double_quant:
            absmax = dequantize_absmax(absmax, self.weight_absmax_scale, self.weight_absmax_offset)
        w = dequantize_nf4(self.weight_nf4, absmax, torch.Size(self.weight_shape), self.blocksize)
        return w.to(self._compute_dtype)

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.dequantized_weight()
        bias = self.bias.to(w.dtype) if self.bias is not None else None
        return F.linear(x.to(w.dtype), w, bias)

    def base_weight_bytes(self) -> int:
        """Bytes taken by the frozen base weight (packed values + scales)."""
        names = ("weight_nf4", "weight_absmax", "weight_absmax_scale", "weight_absmax_offset")
        return sum(b.numel() * b.element_size() for n, b in self.named_buffers() if n in names)

    def merge(self) -> None:
        raise ValueError(
            "cannot merge LoRA into a 4-bit base in place (the update would be quantized away); "
            "use merge_and_unload(model), which dequantizes"
        )

    def to_linear(self) -> nn.Linear:
        """A full-precision `nn.Linear` holding dequant(W) + s B A (DoRA-scaled when enabled)."""
        with torch.no_grad():
            w = self.dequantized_weight()
            delta = self.delta_weight().to(w.dtype)
            if self.use_dora:
                w = (self.lora_magnitude_vector / self._row_norm(w, delta))[:, None] * (w + delta)
            else:
                w = w + delta
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        lin.weight = nn.Parameter(w, requires_grad=False)
        lin.bias = self.bias
        return lin
