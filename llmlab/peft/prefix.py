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
with peft. The attention layers read them through `llmlab.nn.attention.Attention.prefix_kv`.

Positions follow HF peft, which passes the prefixes as a P-token `past_key_values`: the real tokens sit at
positions P, P+1, ... (a forward pre-hook shifts `position_ids`), and RoPE is not applied to the prefix keys
(like cached keys, they are taken as already rotated). So a prefix set to the cached keys/values of P real
tokens (`prefix_tuning_init="TEXT"`, see `text_prefixes`) gives exactly the model's output with those tokens
prepended, and a prefix adapter gives the same logits in llmlab and in peft.
"""

from __future__ import annotations

import functools
from typing import Any

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

    def reserved_positions(self) -> tuple[int, int]:
        """`llmlab.nn.virtual.ReservesPositions`: P positions, no cache entries (the prefixes live in each layer)."""
        return (0, 0) if self.disabled else (self.num_virtual_tokens, 0)

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


@torch.no_grad()
def text_prefixes(model: nn.Module, token_ids: list[int], num_virtual_tokens: int) -> torch.Tensor:
    """The keys/values the frozen `model` caches for a text, as a (P, L * 2 * nkv * hs) prefix matrix.

    The ids are repeated/cropped to P tokens (like peft's prompt-tuning text init) and run through the model
    (without prefixes, in eval mode) with a KV cache; the cached, already-rotated keys and the values become
    the prefixes. Li & Liang 2021 (section 7.2) found such "real word" initialisations train better than
    random ones, especially with little data: the untrained adapter is the model with the text prepended.

    Args:
        model: a llmlab model with `make_kv_cache` and no prefix attached yet.
        token_ids: the init text's token ids.
        num_virtual_tokens: prefix length P.
    """
    if not token_ids:
        raise ValueError("prefix_tuning_init='TEXT' needs at least one init token id")
    ids = (list(token_ids) * (num_virtual_tokens // len(token_ids) + 1))[:num_virtual_tokens]
    p = next(model.parameters())
    was_training = model.training
    model.eval()
    cache = model.make_kv_cache(1, num_virtual_tokens)
    model(torch.tensor([ids], device=p.device), kv_cache=cache, logits_to_keep=1)
    model.train(was_training)
    n_layer, _, n_kv_head, _, head_dim = cache.k.shape
    kv = torch.stack([cache.k[:, 0], cache.v[:, 0]], dim=1)  # (L, 2, nkv, P, hs)
    return kv.permute(3, 0, 1, 2, 4).reshape(num_virtual_tokens, n_layer * 2 * n_kv_head * head_dim)


def attach_prefix(model: nn.Module, encoder: PrefixEncoder, layers: list[Attention]) -> None:
    """Register `encoder` as `model.prefix_encoder`, point each attention layer at its prefixes and shift
    the positions of the real tokens by P (see the module docstring)."""
    model.prefix_encoder = encoder
    for i, attn in enumerate(layers):
        attn.prefix_kv = functools.partial(encoder.layer_kv, i)
    hook = functools.partial(_shift_positions, encoder)
    model._prefix_position_hook = model.register_forward_pre_hook(hook, with_kwargs=True)


def detach_prefix(model: nn.Module, layers: list[Attention]) -> None:
    """Remove the prefixes from the attention layers, the position shift and the encoder from the model."""
    for attn in layers:
        attn.prefix_kv = None
    model._prefix_position_hook.remove()
    del model._prefix_position_hook
    del model.prefix_encoder


def _shift_positions(
    encoder: PrefixEncoder, model: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """Forward pre-hook: the new tokens sit after the P virtual tokens (positions `P + past ...`)."""
    if encoder.disabled:
        return None
    input_ids = args[0] if args else kwargs["input_ids"]
    n_prefix, t = encoder.num_virtual_tokens, input_ids.shape[1]
    cache = kwargs.get("kv_cache")
    past = cache.seq_len if cache is not None else 0
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    if block_size is not None and n_prefix + past + t > block_size:
        raise ValueError(f"{n_prefix} prefix tokens + {past + t} tokens exceed block_size={block_size}; crop the input")
    positions = kwargs.get("position_ids")
    if positions is None:
        positions = torch.arange(n_prefix + past, n_prefix + past + t, device=input_ids.device)  # (T,)
    else:
        positions = positions + n_prefix  # (B, T) or (T,)
    return args, {**kwargs, "position_ids": positions}
