"""Position-wise feed-forward networks: the GPT-2 GELU MLP, ReLU (T5 v1.0), SwiGLU and GEGLU (T5 v1.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MLPS = ("gelu", "gelu_exact", "swiglu", "relu", "gated-gelu")


class GELUMLP(nn.Module):
    """GPT-2 MLP: `c_proj(gelu(c_fc(x)))`.

    GELU: Hendrycks & Gimpel, https://arxiv.org/abs/1606.08415. GPT-2 (HF `gelu_new`) uses the tanh
    approximation (`approximate="tanh"`, the default here); nanoGPT uses the exact erf form
    (`approximate="none"`), which is also a little faster on CPU.
    """

    def __init__(
        self, n_embd: int, hidden: int, bias: bool = True, dropout: float = 0.0, approximate: str = "tanh"
    ) -> None:
        super().__init__()
        self.approximate = approximate
        self.c_fc = nn.Linear(n_embd, hidden, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.c_proj.residual_proj = True  # scaled init (GPT-2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate=self.approximate)))


class SwiGLUMLP(nn.Module):
    """SwiGLU, `down_proj(silu(gate_proj(x)) * up_proj(x))` (Shazeer, 2020, https://arxiv.org/abs/2002.05202).

    Uses the Llama parameter names (`gate_proj`, `up_proj`, `down_proj`).
    """

    def __init__(self, n_embd: int, hidden: int, bias: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.up_proj = nn.Linear(n_embd, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.down_proj.residual_proj = True
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x)))


class ReLUMLP(GELUMLP):
    """The original Transformer / T5 v1.0 MLP, `c_proj(relu(c_fc(x)))` (https://arxiv.org/abs/1706.03762)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(F.relu(self.c_fc(x))))


class GEGLUMLP(SwiGLUMLP):
    """GEGLU, `down_proj(gelu_tanh(gate_proj(x)) * up_proj(x))` (Shazeer, 2020, https://arxiv.org/abs/2002.05202):
    T5 v1.1's "gated-gelu" feed-forward."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down_proj(F.gelu(self.gate_proj(x), approximate="tanh") * self.up_proj(x)))


def default_mlp_hidden(kind: str, n_embd: int) -> int:
    """4 * n_embd for GELU; for SwiGLU 2/3 of that (same parameter count), rounded up to a multiple of 8."""
    if kind == "swiglu":
        h = (8 * n_embd + 2) // 3
        return (h + 7) // 8 * 8
    return 4 * n_embd


def build_mlp(kind: str, n_embd: int, hidden: int, bias: bool = True, dropout: float = 0.0) -> nn.Module:
    """A dense MLP by name: 'gelu' (tanh GELU, GPT-2), 'gelu_exact' (erf GELU, nanoGPT), 'swiglu',
    'relu' (T5 v1.0) or 'gated-gelu' (GEGLU, T5 v1.1)."""
    if kind in ("gelu", "gelu_exact"):
        approximate = "tanh" if kind == "gelu" else "none"
        return GELUMLP(n_embd, hidden, bias=bias, dropout=dropout, approximate=approximate)
    if kind == "swiglu":
        return SwiGLUMLP(n_embd, hidden, bias=bias, dropout=dropout)
    if kind == "relu":
        return ReLUMLP(n_embd, hidden, bias=bias, dropout=dropout)
    if kind == "gated-gelu":
        return GEGLUMLP(n_embd, hidden, bias=bias, dropout=dropout)
    raise ValueError(f"unknown mlp '{kind}'; choose one of: {', '.join(MLPS)}")
