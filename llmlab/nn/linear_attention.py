"""Linear attention, Katharopoulos et al. 2020, "Transformers are RNNs" (https://arxiv.org/abs/2006.16236).

Softmax attention `softmax(q k^T) v` is replaced by a kernel `phi(q) phi(k)^T` with the feature map
`phi(x) = elu(x) + 1`, so the sums over keys factor out:

    y_i = phi(q_i)^T S_i / (phi(q_i)^T z_i),   S_i = sum_{j<=i} phi(k_j) v_j^T,   z_i = sum_{j<=i} phi(k_j)

The causal form computes S_i and z_i with a prefix sum (cumsum) in O(T) time instead of O(T^2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0."""
    return F.elu(x) + 1.0


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = True,
    key_padding_mask: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Linear attention with the elu+1 feature map.

    Args:
        q: (B, nh, T, hs) queries; they are the LAST T of the S positions (earlier ones come from a KV cache).
        k: (B, nh, S, hs) keys.
        v: (B, nh, S, hs) values.
        causal: prefix-sum (cumsum) form if True, global sums otherwise.
        key_padding_mask: (B, S) 1 for real tokens, 0 for padding (padded keys get phi(k) = 0).
        eps: added to the normaliser.

    Returns:
        (B, nh, T, hs) outputs.
    """
    t, s = q.shape[2], k.shape[2]
    phi_q, phi_k = elu_feature_map(q), elu_feature_map(k)
    if key_padding_mask is not None:
        phi_k = phi_k * key_padding_mask[:, None, :, None].to(phi_k.dtype)
    if not causal:
        kv = torch.einsum("bhsd,bhse->bhde", phi_k, v)  # (B, nh, hs, hs)
        z = phi_k.sum(dim=2)  # (B, nh, hs)
        num = torch.einsum("bhtd,bhde->bhte", phi_q, kv)
        den = torch.einsum("bhtd,bhd->bht", phi_q, z)
        return num / (den.unsqueeze(-1) + eps)
    past = s - t
    phi_k_new, v_new = phi_k[:, :, past:], v[:, :, past:]
    kv = torch.cumsum(phi_k_new.unsqueeze(-1) * v_new.unsqueeze(-2), dim=2)  # (B, nh, T, hs, hs)
    z = torch.cumsum(phi_k_new, dim=2)  # (B, nh, T, hs)
    if past > 0:  # state carried over from cached tokens
        kv = kv + torch.einsum("bhsd,bhse->bhde", phi_k[:, :, :past], v[:, :, :past]).unsqueeze(2)
        z = z + phi_k[:, :, :past].sum(dim=2, keepdim=True)
    num = torch.einsum("bhtd,bhtde->bhte", phi_q, kv)  # (B, nh, T, hs)
    den = torch.einsum("bhtd,bhtd->bht", phi_q, z)  # (B, nh, T)
    return num / (den.unsqueeze(-1) + eps)


def linear_attention_quadratic(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """Reference O(T^2) form of `linear_attention`: explicit masked kernel matrix (for tests and teaching)."""
    t, s = q.shape[2], k.shape[2]
    a = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)  # (B, nh, T, S)
    if causal:
        mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(diagonal=s - t)
        a = a.masked_fill(~mask, 0.0)
    return (a @ v) / (a.sum(dim=-1, keepdim=True) + eps)
