"""Optimizers: AdamW with decay-aware parameter groups, LAMB, and any `torch.optim` optimizer by name.

Weight decay is a regulariser on *weight matrices*. Applying it to biases, normalisation gains and embedding
tables only hurts (it pulls LayerNorm gains towards 0 and shrinks rare-token embeddings), so, like nanoGPT and
most LLM codebases, we split the parameters into two groups:

- decay: every parameter with ``ndim >= 2`` that does not belong to an ``nn.Embedding`` (Linear weights),
- no_decay: biases and norm weights (``ndim < 2``) and embedding tables (token and learned positions).

Decoupled weight decay (AdamW): Loshchilov & Hutter 2019, https://arxiv.org/abs/1711.05101
LAMB: You et al. 2019, "Large Batch Optimization for Deep Learning: Training BERT in 76 minutes",
https://arxiv.org/abs/1904.00962
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class GroupReport:
    """How many tensors / scalar parameters ended up with and without weight decay."""

    decay_tensors: int
    decay_params: int
    no_decay_tensors: int
    no_decay_params: int

    def __str__(self) -> str:
        return (
            f"weight decay on {self.decay_tensors} tensors ({self.decay_params:,} params), "
            f"none on {self.no_decay_tensors} tensors ({self.no_decay_params:,} params: norms, biases, embeddings)"
        )


def param_groups(model: nn.Module, weight_decay: float) -> tuple[list[dict[str, Any]], GroupReport]:
    """Split trainable parameters into a decayed and a non-decayed group.

    Tied parameters (e.g. the LM head sharing the token embedding) appear once; a parameter that belongs to
    an ``nn.Embedding`` anywhere in the model is never decayed.

    Args:
        model: the model whose ``named_parameters()`` are optimised.
        weight_decay: the decay coefficient of the decayed group.

    Returns:
        (groups, report): the two groups, ready for any ``torch.optim.Optimizer``, and their sizes.
    """
    embedding_ids = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    seen: set[int] = set()
    for _, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        if p.ndim < 2 or id(p) in embedding_ids:
            no_decay.append(p)
        else:
            decay.append(p)
    report = GroupReport(
        decay_tensors=len(decay),
        decay_params=sum(p.numel() for p in decay),
        no_decay_tensors=len(no_decay),
        no_decay_params=sum(p.numel() for p in no_decay),
    )
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]], report


def _norm(t: torch.Tensor) -> float:
    """L2 norm of a whole tensor, accumulated in at least fp32."""
    return float(torch.linalg.vector_norm(t if t.dtype in (torch.float32, torch.float64) else t.float()))


class Lamb(torch.optim.Optimizer):
    """LAMB: Adam moments + decoupled weight decay, with a per-tensor ("layer-wise") trust ratio.

    Algorithm 2 of You et al. 2019 (https://arxiv.org/abs/1904.00962), per parameter tensor ``x``::

        m = b1 * m + (1 - b1) * g              v = b2 * v + (1 - b2) * g^2
        m_hat = m / (1 - b1^t)                 v_hat = v / (1 - b2^t)
        u = m_hat / (sqrt(v_hat) + eps) + wd * x
        trust = ||x|| / ||u||   (1 when either norm is 0; optionally clipped to max_trust_ratio)
        x = x - lr * trust * u

    The trust ratio makes every tensor move by about ``lr`` times its own norm, whatever the gradient scale,
    which is what lets LAMB train with very large batches.

    Args:
        params: parameters or parameter groups (use `param_groups` to skip decay on norms/biases/embeddings).
        lr: learning rate.
        betas: coefficients of the running averages of the gradient and its square.
        eps: added to the denominator for numerical stability.
        weight_decay: decoupled weight decay ``wd``.
        max_trust_ratio: clip the trust ratio to at most this value (None = no clipping, as in the paper).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        max_trust_ratio: float | None = None,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"LAMB learning rate must be >= 0, got {lr}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"LAMB betas must be in [0, 1), got {betas}")
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, max_trust_ratio=max_trust_ratio)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:  # type: ignore[override]
        """Perform one optimisation step."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("LAMB does not support sparse gradients")
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = torch.tensor(0.0)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                t = state["step"].item()
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
                exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                m_hat = exp_avg / (1 - beta1**t)
                v_hat = exp_avg_sq / (1 - beta2**t)
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"] != 0.0:
                    update = update.add(p, alpha=group["weight_decay"])
                # Norms of the whole tensor (under FSDP2 these are DTensor reductions over all shards).
                w_norm, u_norm = _norm(p.detach()), _norm(update)
                trust = w_norm / u_norm if w_norm > 0.0 and u_norm > 0.0 else 1.0
                if group["max_trust_ratio"] is not None:
                    trust = min(trust, group["max_trust_ratio"])
                p.add_(update, alpha=-group["lr"] * trust)
        return loss


# Optimizer is the base class; LBFGS needs a closure and one param group; SparseAdam needs sparse gradients.
_UNSUPPORTED = {"Optimizer", "LBFGS", "SparseAdam"}


def available_optimizers() -> list[str]:
    """Names accepted by `build_optimizer` (case-insensitive)."""
    torch_names = [
        name
        for name, obj in vars(torch.optim).items()
        if inspect.isclass(obj) and issubclass(obj, torch.optim.Optimizer) and name not in _UNSUPPORTED
    ]
    return sorted({"AdamW", "LAMB", *torch_names}, key=str.lower)


def optimizer_class(name: str, extra: dict[str, Any] | None = None) -> type[torch.optim.Optimizer]:
    """The optimizer class for ``optim.name`` after checking ``optim.kwargs`` against its signature.

    Raises:
        ValueError: unknown optimizer name (the message lists the valid ones) or a keyword it does not take.
    """
    lowered = {n.lower(): n for n in available_optimizers()}
    key = str(name).lower()
    if key not in lowered:
        raise ValueError(f"unknown optimizer '{name}' (optim.name); choose one of: {', '.join(available_optimizers())}")
    cls: type[torch.optim.Optimizer] = Lamb if key == "lamb" else getattr(torch.optim, lowered[key])
    accepted = inspect.signature(cls.__init__).parameters
    for k in extra or {}:
        if k not in accepted or k in ("self", "params"):
            valid = ", ".join(k2 for k2 in accepted if k2 not in ("self", "params"))
            raise ValueError(f"optimizer {cls.__name__} has no argument '{k}' (optim.kwargs); it takes: {valid}")
    return cls


def build_optimizer(
    model: nn.Module,
    name: str,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] | list[float] = (0.9, 0.95),
    eps: float = 1e-8,
    extra: dict[str, Any] | None = None,
) -> tuple[torch.optim.Optimizer, GroupReport]:
    """Create an optimizer over `param_groups(model, weight_decay)`.

    Args:
        model: the (possibly DDP/FSDP-wrapped) model.
        name: ``adamw``, ``lamb`` or the name of any ``torch.optim`` optimizer (``SGD``, ``Adam``, ``RMSprop``,
            ...), case-insensitive.
        lr: initial learning rate (the schedule overwrites it every iteration).
        weight_decay: weight decay of the decayed group.
        betas: passed to optimizers that take ``betas``.
        eps: passed to optimizers that take ``eps``.
        extra: further keyword arguments for the optimizer (e.g. ``{"momentum": 0.9}`` for SGD).

    Raises:
        ValueError: unknown optimizer name (the message lists the valid ones) or a bad keyword.
    """
    groups, report = param_groups(model, weight_decay)
    cls = optimizer_class(name, extra)
    accepted = inspect.signature(cls.__init__).parameters
    kwargs: dict[str, Any] = {"lr": lr}
    if "betas" in accepted:
        kwargs["betas"] = tuple(betas)
    if "eps" in accepted:
        kwargs["eps"] = eps
    kwargs.update(extra or {})
    if "fused" in accepted and "fused" not in kwargs and _fused_supported(groups):
        kwargs["fused"] = True  # one kernel for all tensors: ~3x faster optimizer step than foreach on CPU
    return cls(groups, **kwargs), report


def _fused_supported(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused Adam/AdamW kernel can take these parameters: plain (not sharded DTensor)
    floating-point tensors, all on the CPU or all on one CUDA device."""
    params = [p for g in groups for p in g["params"]]
    devices = {p.device.type for p in params}
    return (
        bool(params)
        and devices <= {"cpu"} | ({"cuda"} if len(devices) == 1 else set())
        and all(type(p) is nn.Parameter and p.is_floating_point() for p in params)
    )
