"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning",
https://arxiv.org/abs/2104.08691).

P trainable "soft prompt" vectors are prepended to the input embeddings; the whole model stays frozen:

    x = [prompt_embeddings (P, C); embed(input_ids) (T, C)]          -> the model sees P + T positions

How it is wired without changing any model's forward:
- the token embedding is replaced by `PromptEmbedding`, which keeps the base `weight` (same name, still tied
  to `lm_head`) and maps the *virtual token ids* V, V+1, ..., V+P-1 (V = vocab size) to the soft prompt;
- a forward pre-hook on the model prepends those P ids to `input_ids`, -100 to `targets` (no loss on the
  prompt) and ones to `attention_mask`; a forward hook drops the P prompt positions from the logits, so the
  output lines up with the caller's `input_ids`. Positions (learned, RoPE) simply count the prompt too;
  explicit `position_ids` (left-padded batches) get positions 0..P-1 for the prompt and are shifted by P.

With a KV cache the prompt is prepended on the first (prefill) call only (`kv_cache.seq_len == 0`); the
cache then also holds the P prompt positions, so the caller sizes it for P more tokens and indexes new
tokens by its own count, not by `kv_cache.seq_len`. `llmlab.nn.virtual.reserved_positions(model)` tells how many;
llmlab's generation loop and beam search do this (speculative decoding refuses prompt-tuned models).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle


class PromptEmbedding(nn.Module):
    """An `nn.Embedding` extended with P trainable soft-prompt vectors at ids V .. V+P-1.

    Args:
        base: the model's token embedding (its `weight` Parameter is reused).
        num_virtual_tokens: P.
        init_token_ids: initialise the prompt from these tokens' embeddings (repeated/cropped to P);
            None draws P random rows of the vocabulary embedding.
        generator: RNG for the random init.
    """

    def __init__(
        self,
        base: nn.Embedding,
        num_virtual_tokens: int,
        init_token_ids: list[int] | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.weight = base.weight
        self.num_embeddings, self.embedding_dim = base.num_embeddings, base.embedding_dim
        self.padding_idx = base.padding_idx
        self.num_virtual_tokens = num_virtual_tokens
        if init_token_ids is not None:
            bad = [i for i in init_token_ids if not 0 <= i < self.num_embeddings]
            if bad:
                raise ValueError(f"init_token_ids {bad[:3]} are outside the vocabulary [0, {self.num_embeddings})")
            ids = (init_token_ids * (num_virtual_tokens // len(init_token_ids) + 1))[:num_virtual_tokens]
            ids_t = torch.tensor(ids, dtype=torch.long)
        else:
            ids_t = torch.randint(0, self.num_embeddings, (num_virtual_tokens,), generator=generator)
        self.prompt_embeddings = nn.Parameter(self.weight.detach()[ids_t.to(self.weight.device)].clone())  # (P, C)
        self.disabled = False

    def reserved_positions(self) -> tuple[int, int]:
        """`llmlab.nn.virtual.ReservesPositions`: P positions, prefilled as P cache entries (none while disabled)."""
        return (0, 0) if self.disabled else (self.num_virtual_tokens, self.num_virtual_tokens)

    def virtual_ids(self, batch_size: int, device: torch.device) -> torch.Tensor:
        """(B, P) ids V .. V+P-1 that select the soft prompt."""
        ids = torch.arange(self.num_embeddings, self.num_embeddings + self.num_virtual_tokens, device=device)
        return ids.expand(batch_size, -1)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, T) ids (real or virtual) -> (B, T, C)."""
        v = self.num_embeddings
        x = F.embedding(input_ids.clamp(max=v - 1), self.weight, self.padding_idx)  # (B, T, C)
        is_virtual = input_ids >= v
        if not bool(is_virtual.any()):
            return x
        prompt = self.prompt_embeddings[(input_ids - v).clamp(0, self.num_virtual_tokens - 1)]  # (B, T, C)
        return torch.where(is_virtual[..., None], prompt.to(x.dtype), x)


class PromptHooks:
    """The forward pre-hook / hook pair that prepends the soft prompt and strips it from the logits."""

    def __init__(self, embedding: PromptEmbedding) -> None:
        self.embedding = embedding
        self.handles: list[RemovableHandle] = []
        self._real_tokens: list[int] = []  # per forward call: real tokens T when the prompt was prepended, else 0

    def attach(self, model: nn.Module) -> None:
        self.handles = [
            model.register_forward_pre_hook(self.pre_hook, with_kwargs=True),
            model.register_forward_hook(self.post_hook, with_kwargs=True),
        ]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def pre_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        args, kwargs = list(args), dict(kwargs)
        input_ids = args.pop(0) if args else kwargs.pop("input_ids")
        if args:
            kwargs["targets"] = args.pop(0)
        cache = kwargs.get("kv_cache")
        prepend = not self.embedding.disabled and (cache is None or cache.seq_len == 0)
        self._real_tokens.append(input_ids.shape[1] if prepend else 0)
        mask = kwargs.get("attention_mask")
        if not self.embedding.disabled and mask is not None and mask.dim() != 2:
            raise ValueError(
                "prompt tuning takes a (B, S) padding attention_mask, not a 4-D mask (packed rows would share the "
                "soft prompt); do not pack"
            )
        if not self.embedding.disabled and mask is not None:  # covers cached + new tokens, so always
            ones = torch.ones(mask.shape[0], self.embedding.num_virtual_tokens, dtype=mask.dtype, device=mask.device)
            kwargs["attention_mask"] = torch.cat([ones, mask], dim=1)
        positions = kwargs.get("position_ids")
        if not self.embedding.disabled and positions is not None:  # the real tokens come after the P prompt ones
            p = self.embedding.num_virtual_tokens
            positions = positions + p
            if prepend:
                prompt_pos = torch.arange(p, device=positions.device)  # (P,)
                prompt_pos = prompt_pos.expand(*positions.shape[:-1], p)  # (P,) or (B, P)
                positions = torch.cat([prompt_pos, positions], dim=-1)  # (P + T,) or (B, P + T)
            kwargs["position_ids"] = positions
        if prepend:
            b, p = input_ids.shape[0], self.embedding.num_virtual_tokens
            input_ids = torch.cat([self.embedding.virtual_ids(b, input_ids.device), input_ids], dim=1)  # (B, P+T)
            if kwargs.get("targets") is not None:
                t = kwargs["targets"]
                ignore = torch.full((b, p), -100, dtype=t.dtype, device=t.device)
                kwargs["targets"] = torch.cat([ignore, t], dim=1)  # no loss on the prompt positions
        return (input_ids, *args), kwargs

    def post_hook(self, module: nn.Module, args: tuple, kwargs: dict[str, Any], output: Any) -> Any:
        t = self._real_tokens.pop()
        if t and hasattr(output, "logits"):  # the logits are for P + T positions, or the last k (`logits_to_keep`)
            output.logits = output.logits[:, -t:]  # (B, T or fewer, V): only real positions
            if getattr(output, "hidden_states", None) is not None:
                output.hidden_states = output.hidden_states[:, -t:]
        return output
