"""Mixture-of-Experts feed-forward layer with top-k routing and a load-balancing loss.

Sparsely-gated MoE: Shazeer et al. 2017 (https://arxiv.org/abs/1701.06538). Load-balancing auxiliary loss
from the Switch Transformer: Fedus et al. 2021 (https://arxiv.org/abs/2101.03961), eq. (4):

    aux = num_experts * sum_i f_i * P_i

where f_i is the fraction of routing slots (token x top-k choice) sent to expert i and P_i the mean router
probability of expert i. It is minimal (= 1) when routing is uniform.
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.nn.mlp import build_mlp


class MoE(nn.Module):
    """Top-k routed experts; each expert is a dense MLP (`build_mlp(kind, ...)`).

    Args:
        n_embd: model width C.
        hidden: hidden size of each expert.
        num_experts: number of experts E.
        top_k: experts per token k; their gate values are renormalised to sum to 1.
        kind: expert MLP kind, 'gelu' or 'swiglu'.
        bias: biases in the expert projections.
        dropout: dropout inside the experts.
    """

    def __init__(
        self,
        n_embd: int,
        hidden: int,
        num_experts: int,
        top_k: int = 2,
        kind: str = "gelu",
        bias: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not 1 <= top_k <= num_experts:
            raise ValueError(f"moe_top_k={top_k} must be between 1 and moe_num_experts={num_experts}")
        self.num_experts = num_experts
        self.top_k = top_k
        self.router = nn.Linear(n_embd, num_experts, bias=False)
        self.experts = nn.ModuleList(
            build_mlp(kind, n_embd, hidden, bias=bias, dropout=dropout) for _ in range(num_experts)
        )

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router decisions for flat tokens x (N, C).

        Returns:
            gates (N, k) renormalised top-k weights, experts (N, k) chosen expert ids, probs (N, E) router
            softmax (float32).
        """
        probs = torch.softmax(self.router(x).float(), dim=-1)  # (N, E)
        top_p, top_i = probs.topk(self.top_k, dim=-1)  # (N, k)
        gates = top_p / top_p.sum(dim=-1, keepdim=True)
        return gates, top_i, probs

    def aux_loss(self, experts: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
        """Switch load-balancing loss `E * sum_i f_i * P_i` from routing choices (N, k) and probs (N, E)."""
        counts = torch.zeros(self.num_experts, device=probs.device, dtype=probs.dtype)
        counts.scatter_add_(0, experts.reshape(-1), torch.ones(experts.numel(), device=probs.device, dtype=probs.dtype))
        f = counts / experts.numel()  # (E,) fraction of routing slots per expert (no gradient)
        p = probs.mean(dim=0)  # (E,) mean router probability (carries the gradient)
        return self.num_experts * (f * p).sum()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, T, C) -> (y (B, T, C), aux_loss scalar)."""
        b, t, c = x.shape
        flat = x.reshape(-1, c)  # (N, C)
        gates, experts, probs = self.route(flat)
        y = torch.zeros_like(flat)
        for e, expert in enumerate(self.experts):
            token_idx, slot = torch.where(experts == e)  # tokens that chose expert e, and in which top-k slot
            if token_idx.numel() == 0:
                continue
            out = expert(flat[token_idx]) * gates[token_idx, slot].unsqueeze(-1).to(flat.dtype)
            y.index_add_(0, token_idx, out)
        return y.view(b, t, c), self.aux_loss(experts, probs)
