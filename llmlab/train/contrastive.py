"""Contrastive sentence-embedding losses: SimCSE (in-batch negatives) and supervised contrastive (SupCon).

- SimCSE (Gao, Yao & Chen 2021, https://arxiv.org/abs/2104.08821): each sentence is encoded twice with different
  dropout masks (unsupervised) giving ``z1[i]``, ``z2[i]``; ``sim[i, j] = cos(z1[i], z2[j]) / temperature``
  (temperature 0.05) and the loss is the cross-entropy of ``sim[i]`` with target ``i``: the other sentences of
  the batch are the negatives.
- SupCon (Khosla et al. 2020, https://arxiv.org/abs/2004.11362, eq. 2, ``L_out``): over N normalised features
  with labels, for every anchor i with positives ``P(i) = {p != i : y_p = y_i}`` and ``A(i)`` = all samples
  except i::

      L_i = -1/|P(i)| * sum_{p in P(i)} log( exp(z_i . z_p / t) / sum_{a in A(i)} exp(z_i . z_a / t) )

  averaged over the anchors that have at least one positive. The denominator excludes only the anchor itself
  (not the other positives).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """Unsupervised SimCSE loss of two views (B, C) and (B, C) of the same B sentences (mean over the batch)."""
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(
            f"simcse_loss needs two (B, C) tensors of one shape, got {tuple(z1.shape)} and {tuple(z2.shape)}"
        )
    sim = F.normalize(z1.float(), dim=-1) @ F.normalize(z2.float(), dim=-1).T / temperature  # (B, B)
    return F.cross_entropy(sim, torch.arange(len(z1), device=z1.device))


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Supervised contrastive loss ``L_out`` of (N, C) features (L2-normalised here) with (N,) labels.

    Raises:
        ValueError: no anchor has a positive (every label occurs once).
    """
    z = F.normalize(features.float(), dim=-1)
    n = len(z)
    logits = z @ z.T / temperature  # (N, N)
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # A(i): everything but the anchor
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (N, N)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask  # (N, N) P(i)
    counts = positives.sum(dim=1)
    has_positive = counts > 0
    if not bool(has_positive.any()):
        raise ValueError("supcon_loss: no sample shares its label with another sample in the batch")
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)  # (N,)
    per_anchor = -pos_log_prob[has_positive] / counts[has_positive]
    return per_anchor.mean()
