"""`BertConfig`: the BERT family (BERT, RoBERTa, ALBERT) with Hugging Face field names (no torch import).

One config for the three variants, told apart by `variant`:
- "bert" (Devlin et al. 2019, https://arxiv.org/abs/1810.04805): learned positions 0..T-1, token types, pooler.
- "roberta" (Liu et al. 2019, https://arxiv.org/abs/1907.11692): one token type, positions counted from
  `pad_token_id + 1` over non-pad tokens (`pad + 1 + cumsum(mask)`, as fairseq/HF), so
  `max_position_embeddings` includes the `pad + 1` offset rows.
- "albert" (Lan et al. 2020, https://arxiv.org/abs/1909.11942): factorised embeddings (`embedding_size` E
  projected to `hidden_size`), layers shared across depth (`num_hidden_groups` distinct layers), the MLM head
  projects back to E, sentence-order prediction head.

Aliases `n_layer`, `n_embd`, `n_head`, `block_size` (usable positions: RoBERTa's offset removed),
`tie_embeddings`, `kv_heads` let family-agnostic code read it like a decoder config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from llmlab.config.checks import check_minimum
from llmlab.models.registry import config_from_dict

FAMILY = "bert"
VARIANTS = ("bert", "roberta", "albert")
ACTIVATIONS = {"gelu": "gelu_exact", "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_fast": "gelu"}
"""HF `hidden_act` -> `llmlab.nn.mlp` kind (erf GELU or the tanh approximation)."""
ATTENTION_BACKENDS = ("sdpa", "eager")


@dataclass
class BertConfig:
    """Configuration of a `Bert` encoder. Defaults are a tiny BERT; see `llmlab.models.bert.presets`.

    Attributes:
        variant: "bert", "roberta" or "albert".
        vocab_size: number of token ids.
        hidden_size: width C.
        num_hidden_layers: number of layers (ALBERT: applications of the shared layers).
        num_attention_heads: attention heads.
        intermediate_size: feed-forward hidden size.
        hidden_act: HF activation name ("gelu" = erf GELU; "gelu_new" = tanh approximation, ALBERT's).
        hidden_dropout_prob: dropout on embeddings and residual branches (also used on attention weights:
            llmlab's block has one dropout rate).
        attention_probs_dropout_prob: kept for HF round trips (informational).
        max_position_embeddings: rows of the position embedding (RoBERTa: includes the pad + 1 offset).
        type_vocab_size: token-type rows (BERT 2; RoBERTa 1).
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the normal init.
        pad_token_id: the padding id (RoBERTa's positions are counted from it).
        embedding_size: ALBERT's factorised embedding width E (None = hidden_size, no projection).
        num_hidden_groups: ALBERT: number of distinct layers shared across depth (1 = all layers share).
        pooler: the pooler `tanh(dense(h[:, 0]))` exists.
        mlm_head: the masked-LM head exists (a checkpoint of the bare encoder has none).
        sentence_head: the NSP (BERT) / SOP (ALBERT) two-way classifier on the pooler exists.
        tie_word_embeddings: the MLM decoder shares the word embedding.
        attention: 'sdpa' or 'eager' (can return attention weights).
        bos_token_id, eos_token_id: special ids carried for HF round trips (RoBERTa 0 / 2).
    """

    variant: str = "bert"
    vocab_size: int = 1024
    hidden_size: int = 64
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 256
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    pad_token_id: int = 0
    embedding_size: int | None = None
    num_hidden_groups: int = 1
    pooler: bool = True
    mlm_head: bool = True
    sentence_head: bool = False
    tie_word_embeddings: bool = True
    attention: str = "sdpa"
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes carried along (e.g. the HF architecture it came from); not used by the model."""

    # ---- aliases used by family-agnostic code ---------------------------------------------------------------
    @property
    def n_layer(self) -> int:
        return self.num_hidden_layers

    @property
    def n_embd(self) -> int:
        return self.hidden_size

    @property
    def n_head(self) -> int:
        return self.num_attention_heads

    @property
    def kv_heads(self) -> int:
        return self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def position_offset(self) -> int:
        """First position id: RoBERTa counts from pad_token_id + 1, BERT and ALBERT from 0."""
        return self.pad_token_id + 1 if self.variant == "roberta" else 0

    @property
    def block_size(self) -> int:
        """Longest input (tokens) the position table covers."""
        return self.max_position_embeddings - self.position_offset

    @property
    def tie_embeddings(self) -> bool:
        return self.tie_word_embeddings

    @property
    def embed_width(self) -> int:
        """Width of the token embeddings: ALBERT's E, else hidden_size."""
        return self.embedding_size or self.hidden_size

    @property
    def mlp_kind(self) -> str:
        return ACTIVATIONS[self.hidden_act]

    def resolved(self) -> BertConfig:
        """A copy with `embedding_size` set to its effective value (configs of one architecture compare equal)."""
        return dataclasses.replace(self, embedding_size=self.embed_width)

    def validate(self) -> None:
        """Raise ValueError (one line naming the field and the fix) if the configuration is inconsistent."""
        fields = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
        check_minimum("model", self, (*fields, "max_position_embeddings", "num_hidden_groups"), 1, "must be positive")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown model.variant {self.variant!r}; choose one of: {', '.join(VARIANTS)}")
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"model.hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; change one of them"
            )
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"model.hidden_act {self.hidden_act!r} is not supported; use one of: {', '.join(ACTIVATIONS)}")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(f"unknown model.attention {self.attention!r}; choose one of: {', '.join(ATTENTION_BACKENDS)}")
        if self.type_vocab_size < 0:
            raise ValueError(f"model.type_vocab_size must be >= 0, got {self.type_vocab_size}")
        if not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(f"model.pad_token_id={self.pad_token_id} is outside the vocabulary (size {self.vocab_size})")
        if self.block_size < 1:
            raise ValueError(
                f"model.max_position_embeddings={self.max_position_embeddings} leaves no positions after RoBERTa's "
                f"offset pad_token_id + 1 = {self.position_offset}; raise it"
            )
        if self.variant != "albert" and (self.embedding_size not in (None, self.hidden_size) or self.num_hidden_groups != 1):
            raise ValueError("model.embedding_size and num_hidden_groups are ALBERT options; set variant: albert")
        if self.num_hidden_layers % self.num_hidden_groups != 0:
            raise ValueError(
                f"model.num_hidden_layers={self.num_hidden_layers} must be a multiple of num_hidden_groups="
                f"{self.num_hidden_groups}"
            )
        if self.sentence_head and not self.pooler:
            raise ValueError("model.sentence_head needs the pooler; set pooler: true")
        for name in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"model.{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict with `"family": "bert"` (so `llmlab.models.load_model` can dispatch)."""
        return {"family": FAMILY, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BertConfig:
        """Build and validate a config from a dict (as written by `to_dict`); unknown keys raise ValueError."""
        return config_from_dict(cls, d, FAMILY)
