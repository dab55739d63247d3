"""The encoder-decoder base shared by T5 and BART: `Seq2SeqLM`, its layers, attention, config and cache.

    h = model.encode(input_ids, attention_mask)                          # (B, S, C), run once per source
    logits = model.decode(decoder_input_ids, h, attention_mask, cache)   # (B, T, V)
    out = model(input_ids, labels, attention_mask=...)                   # Seq2SeqOutput (loss over labels != -100)

A family (`llmlab.models.t5`, `llmlab.models.bart`) builds the two stacks (`_build_stack`) and writes how tokens
enter a stack (`_embed`: T5 plain embeddings, BART scaled embeddings + learned positions), its relative
position bias (`_position_bias`: T5's buckets, None for BART) and the LM head (`_lm_logits`).

Why a separate attention module instead of `llmlab.nn.Attention`: encoder-decoder attention needs an additive
bias per head (T5's relative positions), a free score scale (T5 does not divide by sqrt(d)), the encoder's
padding mask inside cross-attention, and cross-attention keys/values that are projected from the encoder
output ONCE per generation and then read from the cache (`Seq2SeqCache.cross`).

References: Vaswani et al. 2017 (https://arxiv.org/abs/1706.03762), T5 (Raffel et al. 2019,
https://arxiv.org/abs/1910.10683), BART (Lewis et al. 2019, https://arxiv.org/abs/1910.13461).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.base import DecoderLM
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.mlp import MLPS, build_mlp
from llmlab.nn.norms import NORMS, build_norm


@dataclass
class Seq2SeqConfig:
    """Fields every encoder-decoder family has (T5Config and BartConfig add their own).

    Attributes:
        vocab_size: shared source/target vocabulary.
        n_embd: model width C (`d_model`).
        n_head: attention heads.
        head_dim: size of one head (T5 `d_kv`; BART n_embd // n_head).
        d_ff: feed-forward hidden size.
        n_layer: encoder layers.
        n_decoder_layer: decoder layers (None = n_layer).
        block_size: most target positions generated/cached (BART: learned positions; T5: a cache size).
        dropout: dropout on embeddings, sub-layer outputs and the final hidden states.
        norm_eps: epsilon of the norms.
        tie_embeddings: the LM head shares the token embedding.
        pad_token_id / eos_token_id / decoder_start_token_id: special ids (the decoder starts from the last).
        mlp: feed-forward kind of `llmlab.nn.mlp` ('relu', 'gated-gelu', 'gelu_exact', ...).
    """

    vocab_size: int = 32128
    n_embd: int = 512
    n_head: int = 8
    head_dim: int = 64
    d_ff: int = 2048
    n_layer: int = 6
    n_decoder_layer: int | None = None
    block_size: int = 512
    dropout: float = 0.1
    norm_eps: float = 1e-6
    tie_embeddings: bool = True
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0
    mlp: str = "relu"

    @property
    def kv_heads(self) -> int:
        return self.n_head

    @property
    def decoder_layers(self) -> int:
        return self.n_decoder_layer if self.n_decoder_layer is not None else self.n_layer

    def resolved(self) -> Seq2SeqConfig:
        """The config itself: every field is explicit already."""
        return self

    def validate(self) -> None:
        """One-line ValueError for an impossible setting."""
        name = type(self).__name__
        for field in ("vocab_size", "n_embd", "n_head", "head_dim", "d_ff", "n_layer", "block_size"):
            if int(getattr(self, field)) < 1:
                raise ValueError(f"{name}.{field} must be >= 1 (got {getattr(self, field)})")
        if self.n_decoder_layer is not None and self.n_decoder_layer < 1:
            raise ValueError(f"{name}.n_decoder_layer must be >= 1 or None (got {self.n_decoder_layer})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{name}.dropout must be in [0, 1) (got {self.dropout})")
        if self.mlp not in MLPS:
            raise ValueError(f"{name}.mlp must be one of {', '.join(MLPS)} (got {self.mlp!r})")
        for field in ("pad_token_id", "eos_token_id", "decoder_start_token_id"):
            if not 0 <= getattr(self, field) < self.vocab_size:
                raise ValueError(f"{name}.{field}={getattr(self, field)} is outside the vocabulary (0..{self.vocab_size - 1})")


@dataclass(frozen=True)
class LayerSpec:
    """The architecture of one encoder or decoder layer (a family builds it from its config)."""

    n_embd: int
    n_head: int
    head_dim: int
    d_ff: int
    mlp: str
    norm: str  # one of llmlab.nn.norms.NORMS
    norm_eps: float
    pre_norm: bool  # T5: x + f(norm(x)); BART: norm(x + f(x))
    bias: bool
    attn_scale: float | None  # None = 1/sqrt(head_dim); T5: 1.0
    dropout: float

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"unknown norm {self.norm!r}; choose one of {', '.join(NORMS)}")


@dataclass
class Seq2SeqOutput:
    """What `Seq2SeqLM.forward` returns.

    Attributes:
        logits: (B, T, V) next-token logits of the decoder.
        loss: mean cross-entropy over labels != -100, or None.
        encoder_last_hidden_state: (B, S, C) the encoder output.
    """

    logits: torch.Tensor
    loss: torch.Tensor | None = None
    encoder_last_hidden_state: torch.Tensor | None = None


def shift_right(labels: torch.Tensor, decoder_start_token_id: int, pad_token_id: int) -> torch.Tensor:
    """Teacher-forcing decoder inputs (B, T): the start token, then labels[:, :-1] with -100 replaced by pad."""
    shifted = labels.new_full(labels.shape, pad_token_id)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def padding_bias(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """(B, S) 1/0 mask -> additive (B, 1, 1, S): 0 for real tokens, the dtype's minimum for padding."""
    if attention_mask is None:
        return None
    return ((1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min).to(dtype)


def causal_bias(t: int, past: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Additive (1, 1, T, past + T) mask: query i (at position past + i) sees keys 0 .. past + i."""
    allowed = torch.ones(t, past + t, dtype=torch.bool, device=device).tril(diagonal=past)
    return torch.zeros(t, past + t, dtype=dtype, device=device).masked_fill(~allowed, torch.finfo(dtype).min)[None, None]


def _add(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """a + b where either may be None (broadcasting the bias shapes)."""
    if a is None:
        return b
    return a if b is None else a + b


class Seq2SeqCache:
    """The decoder's cache during generation.

    Self-attention keys/values grow by the new tokens each step (a preallocated `KVCache`); cross-attention
    keys/values are projected from the encoder output on the first step and reused on every later one.
    """

    def __init__(self, self_attn: KVCache, n_layer: int) -> None:
        self.self_attn = self_attn
        self.cross: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * n_layer  # (B, nh, S, hs) each

    @property
    def seq_len(self) -> int:
        """Target tokens already cached."""
        return self.self_attn.seq_len

    def reorder(self, rows: torch.Tensor) -> None:
        """Row i takes the entries of row `rows[i]` (beam search), in both caches."""
        self.self_attn.reorder(rows)
        self.cross = [None if kv is None else (kv[0].index_select(0, rows), kv[1].index_select(0, rows)) for kv in self.cross]


class Seq2SeqAttention(nn.Module):
    """Self- or cross-attention with an additive bias, a free scale and the seq2seq cache.

    Parameters `q_proj`, `k_proj`, `v_proj`, `o_proj` (the family's HF converter renames them).
    """

    def __init__(self, spec: LayerSpec, *, cross: bool, layer_idx: int) -> None:
        super().__init__()
        inner = spec.n_head * spec.head_dim
        self.n_head, self.head_dim, self.scale = spec.n_head, spec.head_dim, spec.attn_scale
        self.cross, self.layer_idx, self.dropout = cross, layer_idx, spec.dropout
        self.q_proj = nn.Linear(spec.n_embd, inner, bias=spec.bias)
        self.k_proj = nn.Linear(spec.n_embd, inner, bias=spec.bias)
        self.v_proj = nn.Linear(spec.n_embd, inner, bias=spec.bias)
        self.o_proj = nn.Linear(inner, spec.n_embd, bias=spec.bias)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, nh * hs) -> (B, nh, T, hs)."""
        return x.view(x.shape[0], x.shape[1], self.n_head, self.head_dim).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        *,
        bias: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        cache: Seq2SeqCache | None = None,
    ) -> torch.Tensor:
        """Attend from x (B, T, C) to itself or to `source` (B, S, C, the encoder output); returns (B, T, C).

        `bias` is additive, broadcastable to (B, nh, T, S): masks and T5's position bias.
        """
        b, t, _ = x.shape
        q = self._heads(self.q_proj(x))  # (B, nh, T, hs)
        if self.cross:
            kv = cache.cross[self.layer_idx] if cache is not None else None
            if kv is None:
                if source is None:
                    raise ValueError("cross-attention needs the encoder output (encoder_hidden_states)")
                kv = (self._heads(self.k_proj(source)), self._heads(self.v_proj(source)))  # (B, nh, S, hs)
                if cache is not None:
                    cache.cross[self.layer_idx] = kv
            k, v = kv
        else:
            k, v = self._heads(self.k_proj(x)), self._heads(self.v_proj(x))
            if cache is not None:
                k, v = cache.self_attn.update(self.layer_idx, k, v)  # (B, nh, past + T, hs)
        if bias is not None:
            bias = bias.to(q.dtype)
        dropout_p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p, scale=self.scale)
        return self.o_proj(y.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class Seq2SeqLayer(nn.Module):
    """One encoder layer (self-attention, MLP) or decoder layer (+ cross-attention), pre- or post-norm."""

    def __init__(self, spec: LayerSpec, *, cross: bool, layer_idx: int) -> None:
        super().__init__()
        self.pre_norm = spec.pre_norm
        self.self_attn = Seq2SeqAttention(spec, cross=False, layer_idx=layer_idx)
        self.self_attn_norm = build_norm(spec.norm, spec.n_embd, spec.norm_eps)
        self.cross_attn = Seq2SeqAttention(spec, cross=True, layer_idx=layer_idx) if cross else None
        self.cross_attn_norm = build_norm(spec.norm, spec.n_embd, spec.norm_eps) if cross else None
        self.mlp = build_mlp(spec.mlp, spec.n_embd, spec.d_ff, bias=spec.bias)
        self.mlp_norm = build_norm(spec.norm, spec.n_embd, spec.norm_eps)
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout > 0 else nn.Identity()

    def _residual(self, x: torch.Tensor, norm: nn.Module, fn: nn.Module, **kwargs: object) -> torch.Tensor:
        """Pre-norm `x + f(norm(x))` (T5) or post-norm `norm(x + f(x))` (BART)."""
        if self.pre_norm:
            return x + self.dropout(fn(norm(x), **kwargs))
        return norm(x + self.dropout(fn(x, **kwargs)))

    def forward(
        self,
        x: torch.Tensor,
        *,
        bias: torch.Tensor | None = None,
        source: torch.Tensor | None = None,
        cross_bias: torch.Tensor | None = None,
        cache: Seq2SeqCache | None = None,
    ) -> torch.Tensor:
        """x (B, T, C) -> (B, T, C); `source` (B, S, C) and `cross_bias` are the decoder's cross-attention inputs."""
        x = self._residual(x, self.self_attn_norm, self.self_attn, bias=bias, cache=cache)
        if self.cross_attn is not None:
            x = self._residual(x, self.cross_attn_norm, self.cross_attn, bias=cross_bias, source=source, cache=cache)
        return self._residual(x, self.mlp_norm, self.mlp)


class Seq2SeqStack(nn.Module):
    """An encoder or a decoder: `positions` (T5 bias table / BART learned positions), `embed_norm` (BART's
    layernorm_embedding, else Identity), `layers`, `final_norm` (T5's, else Identity)."""

    def __init__(self, layers: list[Seq2SeqLayer], positions: nn.Embedding, embed_norm: nn.Module, final_norm: nn.Module) -> None:
        super().__init__()
        self.positions = positions
        self.embed_norm = embed_norm
        self.layers = nn.ModuleList(layers)
        self.final_norm = final_norm


class Seq2SeqLM(DecoderLM):
    """Encoder-decoder LM: shared token embedding, encoder stack, decoder stack, LM head.

    Save/load, presets and `from_state_dict` come from `DecoderLM`; `forward` is the seq2seq one.
    """

    is_encoder_decoder: ClassVar[bool] = True
    module_paths: ClassVar[dict[str, str]] = {
        "embed_tokens": "shared",
        "layers": "decoder.layers",
        "final_norm": "decoder.final_norm",
    }

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__(config)
        self.shared = nn.Embedding(config.vocab_size, config.n_embd)
        self.encoder = self._build_stack(decoder=False)
        self.decoder = self._build_stack(decoder=True)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.shared.weight
        self.drop = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.init_weights()

    # ------------------------------------------------------------------ family hooks
    def _build_stack(self, decoder: bool) -> Seq2SeqStack:
        raise NotImplementedError

    def _embed(self, input_ids: torch.Tensor, stack: Seq2SeqStack, past: int) -> torch.Tensor:
        """Token (and position) embeddings (B, T, C) of tokens at positions past .. past + T - 1."""
        raise NotImplementedError

    def _position_bias(self, stack: Seq2SeqStack, t: int, s: int, past: int) -> torch.Tensor | None:
        """Additive (1, nh, T, S) position bias shared by every layer of `stack`, or None."""
        return None

    def _lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C) final decoder states -> (B, T, V)."""
        return self.lm_head(x)

    def init_weights(self) -> None:
        """Random init for training from scratch (a family may override)."""
        self.apply(lambda m: self._init_normal(m, 0.02))

    # ------------------------------------------------------------------ running
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output (B, S, C) of source ids (B, S) with padding mask (B, S) (1 = real token)."""
        stack, s = self.encoder, input_ids.shape[1]
        x = self.drop(stack.embed_norm(self._embed(input_ids, stack, 0)))  # (B, S, C)
        bias = _add(self._position_bias(stack, s, s, 0), padding_bias(attention_mask, x.dtype))
        for layer in stack.layers:
            x = layer(x, bias=bias)
        return self.drop(stack.final_norm(x))

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None = None,
        cache: Seq2SeqCache | None = None,
    ) -> torch.Tensor:
        """Next-token logits (B, T, V) of decoder ids (B, T) at positions cache.seq_len .. + T - 1.

        With a `cache`, earlier target tokens are read from it and the cross-attention keys/values are
        projected from `encoder_hidden_states` (B, S, C) only when the cache has none yet.
        """
        stack, t = self.decoder, decoder_input_ids.shape[1]
        past = cache.seq_len if cache is not None else 0
        x = self.drop(stack.embed_norm(self._embed(decoder_input_ids, stack, past)))  # (B, T, C)
        bias = _add(self._position_bias(stack, t, past + t, past), causal_bias(t, past, x.dtype, x.device))
        cross_bias = padding_bias(encoder_attention_mask, x.dtype)
        for layer in stack.layers:
            x = layer(x, bias=bias, source=encoder_hidden_states, cross_bias=cross_bias, cache=cache)
        if cache is not None:
            cache.self_attn.advance(t)
        return self._lm_logits(self.drop(stack.final_norm(x)))

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        decoder_input_ids: torch.Tensor | None = None,
    ) -> Seq2SeqOutput:
        """Encode `input_ids` (B, S), decode `decoder_input_ids` (B, T) (default: `shift_right(labels)`).

        Returns logits (B, T, V) and, with `labels` (B, T; -100 = ignored), the mean cross-entropy.
        """
        c = self.config
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("pass labels or decoder_input_ids to run the decoder")
            decoder_input_ids = shift_right(labels, c.decoder_start_token_id, c.pad_token_id)
        h = self.encode(input_ids, attention_mask)
        logits = self.decode(decoder_input_ids, h, attention_mask)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)
        return Seq2SeqOutput(logits, loss, h)

    def make_kv_cache(  # type: ignore[override]
        self, batch_size: int, max_len: int | None = None, dtype: torch.dtype | None = None
    ) -> Seq2SeqCache:
        """An empty decoder cache for `batch_size` rows of up to `max_len` target tokens (default block_size)."""
        c, p = self.config, self.shared.weight
        kv = KVCache(c.decoder_layers, batch_size, max_len or c.block_size, c.n_head, c.head_dim, dtype or p.dtype, p.device)
        return Seq2SeqCache(kv, c.decoder_layers)
