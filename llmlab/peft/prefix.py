"""Prefix tuning (Li & Liang 2021, "Prefix-Tuning: Optimizing Continuous Prompts for Generation",
https://arxiv.org/abs/2101.00190).

Every attention layer gets P trainable key and value vectors per key/value head that all queries attend
to, as if P extra "virtual tokens" had been processed before the input:

    K = [K_prefix; K_x]      V = [V_prefix; V_x]          K_prefix, V_prefix: (nkv, P, hs) per layer

The base model is frozen. Li & Liang found training the prefixes directly unstable and instead
reparameterise them through an MLP, `prefixes = MLP(E)` with a small embedding E (P, d) — set
`prefix_projection=True`. After training, `export_prefixes` computes the prefixes once and drops the MLP.

The prefixes of all layers are stored as one (P, L * 2 * nkv * hs) matrix laid out like HF peft's
`prompt_embeddings` ([layer 0 keys, layer 0 values, layer 1 keys, ...], heads-major), so saved adapters load
with peft. The attention layers read them through `llmlab.nn.attention.Attention.prefix_kv`; RoPE is not
applied to prefix keys (they are free vectors; their "position" is learned implicitly).
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from llmlab.nn.attention import Attention


class PrefixEncoder(nn.Module):
    """The trainable prefixes of every layer.

    Args:
        n_layer: number of attention layers L.
        n_kv_head: key/value heads per layer.
        head_dim: head size hs.
        num_virtual_tokens: prefix length P.
        prefix_projection: reparameterise through `embedding (P, nkv*hs) -> Linear -> tanh -> Linear`.
        encoder_hidden_size: hidden width of that MLP.
        init_std: std of the random initial embedding.
    """

    def __init__(
        self,
        n_layer: int,
        n_kv_head: int,
        head_dim: int,
        num_virtual_tokens: int,
        prefix_projection: bool = False,
        encoder_hidden_size: int = 64,
        init_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_layer, self.n_kv_head, self.head_dim = n_layer, n_kv_head, head_dim
        self.num_virtual_tokens = num_virtual_tokens
        self.token_dim = n_kv_head * head_dim
        out_dim = n_layer * 2 * self.token_dim
        self.prefix_projection = prefix_projection
        self.disabled = False
        if prefix_projection:
            self.embedding = nn.Parameter(torch.randn(num_virtual_tokens, self.token_dim) * init_std)
            self.transform = nn.Sequential(
                nn.Linear(self.token_dim, encoder_hidden_size), nn.Tanh(), nn.Linear(encoder_hidden_size, out_dim)
            )
        else:
            self.embedding = nn.Parameter(torch.randn(num_virtual_tokens, out_dim) * init_std)

    def prefixes(self) -> torch.Tensor:
        """All prefixes, (P, L * 2 * nkv * hs) — what is saved as `prompt_embeddings`."""
        return self.transform(self.embedding) if self.prefix_projection else self.embedding

    def layer_kv(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values of one layer, each (nkv, P, hs); None while disabled."""
        if self.disabled:
            return None
        d = 2 * self.token_dim
        if self.prefix_projection:  # only this layer's rows of the last linear: cheaper than the full MLP
            hidden = self.transform[1](self.transform[0](self.embedding))  # (P, hidden)
            last = self.transform[2]
            rows = slice(layer * d, (layer + 1) * d)
            kv = nn.functional.linear(hidden, last.weight[rows], last.bias[rows])  # (P, 2 * nkv * hs)
        else:
            kv = self.embedding[:, layer * d : (layer + 1) * d]  # (P, 2 * nkv * hs)
        kv = kv.view(self.num_virtual_tokens, 2, self.n_kv_head, self.head_dim).permute(1, 2, 0, 3)  # (2, nkv, P, hs)
        return kv[0], kv[1]

    @torch.no_grad()
    def export_prefixes(self) -> None:
        """Replace the reparameterisation MLP by the prefixes it computes (inference/export form)."""
        if not self.prefix_projection:
            return
        prefixes = self.prefixes().detach().clone()
        del self.transform
        self.prefix_projection = False
        self.embedding = nn.Parameter(prefixes)

    def load_prefixes(self, prefixes: torch.Tensor) -> None:
        """Set the prefixes from a saved (P, L * 2 * nkv * hs) matrix (drops the MLP)."""
        expected = (self.num_virtual_tokens, self.n_layer * 2 * self.token_dim)
        if tuple(prefixes.shape) != expected:
            raise ValueError(f"saved prefixes have shape {tuple(prefixes.shape)}, this model needs {expected}")
        if self.prefix_projection:
            del self.transform
            self.prefix_projection = False
        self.embedding = nn.Parameter(prefixes.to(self.embedding.device, self.embedding.dtype).clone())


def attach_prefix(model: nn.Module, encoder: PrefixEncoder, layers: list[Attention]) -> None:
    """Register `encoder` as `model.prefix_encoder` and point each attention layer at its prefixes."""
    model.prefix_encoder = encoder
    for i, attn in enumerate(layers):
        attn.prefix_kv = functools.partial(encoder.layer_kv, i)


def detach_prefix(model: nn.Module, layers: list[Attention]) -> None:
    """Remove the prefixes from the attention layers and the encoder from the model."""
    for attn in layers:
        attn.prefix_kv = None
    del model.prefix_encoder
