"""GPTQ: post-training int4 quantization that corrects each rounding error with the remaining columns.

Frantar et al. 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers",
https://arxiv.org/abs/2210.17323. For a linear layer with weight W (N, K) and calibration inputs X (n, K), GPTQ
minimises ||X W^T - X Q^T||^2 column by column. With H = 2 X^T X (K, K), dampened by 1% of its mean diagonal,
and U the upper Cholesky factor of H^-1, quantizing column j with error e_j = (w_j - q_j) / U_jj updates the
columns still to come by  W[:, j+1:] -= e_j U[j, j+1:]  (the optimal brain surgeon update), in blocks of
columns with lazy batched updates of the rest. Group scales/zeros are fixed when a group's first column is
reached (on the already-updated weights); with `act_order` columns go in order of decreasing H_jj and the
groups are fixed up front from the original weights ("static groups"), so the stored layout stays the plain
int4 group-wise one of `llmlab.compress.kernels`.

Model level (`gptq_quantize_layers`): the inputs of the first layer are captured for every calibration sequence
(a forward pre-hook), then layer by layer: the Hessians of all its linear layers are accumulated from forward
hooks, each linear is replaced by its GPTQ `Int4Linear`, and the quantized layer's outputs become the next
layer's inputs (so later layers see the quantization errors of earlier ones).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from llmlab.compress.kernels import pack_int4
from llmlab.compress.quant.linear import Int4Linear, check_group_size, int4_codes, int4_params


def gptq_quantize_weight(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    group_size: int,
    symmetric: bool = True,
    *,
    damp: float = 0.01,
    act_order: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """GPTQ one weight matrix: (N, K) float + H (K, K) -> packed (N, K // 2) uint8, scale, zero (N, G) float16."""
    w = weight.detach().float().clone()  # (N, K)
    n, k = w.shape
    h = hessian.detach().float().clone()
    dead = torch.diag(h) == 0  # inputs that were always zero: their columns do not matter
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    groups, dev = k // group_size, w.device
    scale = torch.empty(n, groups, dtype=torch.float16, device=dev)
    zero = torch.empty(n, groups, dtype=torch.float16, device=dev)
    perm = torch.argsort(torch.diag(h), descending=True) if act_order else torch.arange(k, device=dev)
    if act_order:  # static groups: fixed from the original weights, in the original column order
        scale[:], zero[:] = int4_params(w.view(n, groups, group_size), symmetric)
    w, h = w[:, perm], h[perm][:, perm]
    h += damp * torch.mean(torch.diag(h)) * torch.eye(k, device=dev)
    u = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)  # chol(H^-1)
    codes = torch.empty(n, k, device=dev)
    block = group_size * max(1, 128 // group_size)  # whole groups per block
    for i1 in range(0, k, block):
        i2 = min(i1 + block, k)
        w1, err1, u1 = w[:, i1:i2].clone(), torch.zeros(n, i2 - i1, device=dev), u[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = int(perm[i1 + i])
            g = col // group_size
            if not act_order and col % group_size == 0:  # a group begins: fix its parameters on updated weights
                scale[:, g], zero[:, g] = int4_params(w1[:, i : i + group_size], symmetric)
            s, z = scale[:, g].float(), zero[:, g].float()
            q = int4_codes(w1[:, i : i + 1], s, z)[:, 0]  # (N,)
            codes[:, col] = q
            deq = q * s + z
            err = (w1[:, i] - deq) / u1[i, i]
            w1[:, i:] -= err[:, None] * u1[i, i:][None, :]
            err1[:, i] = err
        w[:, i2:] -= err1 @ u[i1:i2, i2:]
    return pack_int4(codes), scale, zero


class _Stop(Exception):
    """Raised by the capture hook once the first layer's inputs are recorded."""


def _first_layer_inputs(model: nn.Module, calibration: list[torch.Tensor]) -> list[tuple[torch.Tensor, dict]]:
    """(hidden states (1, T, C), keyword arguments) that the first layer receives for each calibration sequence."""
    captured: list[tuple[torch.Tensor, dict]] = []

    def hook(_module: nn.Module, args: tuple, kwargs: dict) -> None:
        captured.append((args[0], dict(kwargs)))
        raise _Stop

    handle = model.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for ids in calibration:
            try:
                model(ids)
            except _Stop:
                pass
    finally:
        handle.remove()
    return captured


def _hessians(layer: nn.Module, linears: dict[str, nn.Linear], inputs: list[tuple[torch.Tensor, dict]]) -> dict:
    """H = 2 X^T X / n (K, K) of every linear in `layer`, over all calibration inputs."""
    sums = {
        name: torch.zeros(lin.in_features, lin.in_features, device=lin.weight.device) for name, lin in linears.items()
    }
    counts = dict.fromkeys(linears, 0)

    def make_hook(name: str) -> Any:
        def hook(_module: nn.Module, args: tuple, _out: Any) -> None:
            x = args[0].detach().float().reshape(-1, args[0].shape[-1])  # (n, K)
            sums[name] += x.t() @ x
            counts[name] += x.shape[0]

        return hook

    handles = [lin.register_forward_hook(make_hook(name)) for name, lin in linears.items()]
    try:
        for x, kwargs in inputs:
            layer(x, **kwargs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: 2.0 * sums[name] / max(counts[name], 1) for name in linears}


@torch.no_grad()
def gptq_quantize_layers(
    model: nn.Module,
    calibration: list[torch.Tensor],
    group_size: int,
    symmetric: bool = True,
    *,
    skip: tuple[str, ...] = (),
    act_order: bool = False,
    damp: float = 0.01,
) -> list[str]:
    """Replace every `nn.Linear` inside `model.layers` by its GPTQ `Int4Linear`, sequentially; returns their names.

    Args:
        model: an llmlab decoder (its `layers` take `(x, **kwargs)` and return `(x, ...)`).
        calibration: token sequences, each (1, T) LongTensor.
        group_size: int4 group size (divides every K).
        symmetric: symmetric (zero = -8 * scale) or min/max asymmetric groups.
        skip: qualified module names to leave in float.
        act_order: quantize columns by decreasing Hessian diagonal (static groups).
        damp: dampening, as a fraction of the mean Hessian diagonal.
    """
    if not calibration:
        raise ValueError("GPTQ needs calibration data: pass a non-empty list of (1, T) token tensors")
    device = next(model.parameters()).device
    inputs = _first_layer_inputs(model, [ids.to(device) for ids in calibration])
    prefix = model.module_paths["layers"] if hasattr(model, "module_paths") else "layers"
    done: list[str] = []
    for index, layer in enumerate(model.layers):
        linears = {
            name: mod
            for name, mod in layer.named_modules()
            if isinstance(mod, nn.Linear) and f"{prefix}.{index}.{name}" not in skip
        }
        for name, lin in linears.items():
            check_group_size(lin.in_features, group_size, f"{prefix}.{index}.{name}")
        hessians = _hessians(layer, linears, inputs)
        for name, lin in linears.items():
            packed, scale, zero = gptq_quantize_weight(
                lin.weight, hessians[name], group_size, symmetric, damp=damp, act_order=act_order
            )
            layer.set_submodule(name, Int4Linear(packed, scale, zero, lin.bias))
            done.append(f"{prefix}.{index}.{name}")
        inputs = [(layer(x, **kwargs)[0], kwargs) for x, kwargs in inputs]  # the quantized layer's outputs
    return done
