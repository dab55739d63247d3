"""The BERT encoder family (BERT, RoBERTa, ALBERT) on `llmlab.nn.Block` (post-LN, bidirectional).

BERT: Devlin et al. 2019, https://arxiv.org/abs/1810.04805. RoBERTa: Liu et al. 2019,
https://arxiv.org/abs/1907.11692. ALBERT: Lan et al. 2020, https://arxiv.org/abs/1909.11942.

Module names (HF names in `llmlab.models.bert.hf`):
- `embeddings.{word_embeddings, position_embeddings, token_type_embeddings, LayerNorm}` (+ `project`: ALBERT's
  E -> hidden mapping),
- `blocks.{i}` (the `layers` accessor): `Block(pre_norm=False, causal=False, fused_qkv=False)`: `attn.{q,k,v,o}_proj`, `ln_1`,
  `mlp.{c_fc, c_proj}`, `ln_2`. ALBERT keeps `num_hidden_groups` distinct layers and applies layer
  `i * groups // num_hidden_layers` at depth i (cross-layer sharing),
- `pooler` (tanh(dense(h[:, 0]))), `lm_head` (`MLMHead`: dense, act, LayerNorm, decoder tied to the word
  embedding, bias), `sentence_classifier` (NSP / SOP two-way head on the pooled output).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from llmlab.models.base import DecoderLM
from llmlab.models.bert.config import BertConfig
from llmlab.models.bert.presets import PRESETS
from llmlab.nn.block import Block, BlockConfig
from llmlab.nn.outputs import ModelOutput


@dataclass
class EncoderOutput:
    """What `Bert.encode` returns.

    Attributes:
        last_hidden_state: (B, T, C) output of the last layer.
        pooler_output: (B, C) `tanh(dense(h[:, 0]))`, or None when the model has no pooler.
        hidden_states: (embeddings, layer 1, ..., layer L) each (B, T, C) when asked, else None.
        attentions: per-layer attention weights (B, nh, T, T) when asked, else None.
    """

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, LayerNorm, dropout (ALBERT: then a projection E -> hidden)."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        c, width = config, config.embed_width
        self.variant, self.pad_token_id, self.offset = c.variant, c.pad_token_id, c.position_offset
        self.word_embeddings = nn.Embedding(c.vocab_size, width, padding_idx=c.pad_token_id)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, width)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, width) if c.type_vocab_size > 0 else None
        self.LayerNorm = nn.LayerNorm(width, eps=c.layer_norm_eps)
        self.dropout = nn.Dropout(c.hidden_dropout_prob)
        self.project = nn.Linear(width, c.hidden_size) if c.variant == "albert" else None

    def position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Default positions: (T,) 0..T-1, or RoBERTa's (B, T) `pad + cumsum(not pad)` (pad tokens get `pad`)."""
        if self.variant != "roberta":
            return torch.arange(input_ids.shape[1], device=input_ids.device)
        real = input_ids.ne(self.pad_token_id).long()  # (B, T)
        return torch.cumsum(real, dim=1) * real + self.pad_token_id

    def forward(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None, position_ids: torch.Tensor | None
    ) -> torch.Tensor:
        """(B, T) ids -> (B, T, C)."""
        if position_ids is None:
            position_ids = self.position_ids(input_ids)
        if int(position_ids.max()) >= self.position_embeddings.num_embeddings:
            raise ValueError(
                f"input of {input_ids.shape[1]} tokens is longer than the model's "
                f"{self.position_embeddings.num_embeddings - self.offset} positions; truncate it (max_length)"
            )
        x = self.word_embeddings(input_ids) + self.position_embeddings(position_ids)  # (B, T, E)
        if self.token_type_embeddings is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(types)
        x = self.dropout(self.LayerNorm(x))
        return self.project(x) if self.project is not None else x  # (B, T, C)


class MLMHead(nn.Module):
    """The masked-LM head: `decoder(LayerNorm(act(dense(h)))) + bias`, decoder tied to the word embedding."""

    def __init__(self, config: BertConfig) -> None:
        super().__init__()
        width = config.embed_width
        self.approximate = "none" if config.mlp_kind == "gelu_exact" else "tanh"
        self.dense = nn.Linear(config.hidden_size, width)
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(width, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, T, V) logits."""
        h = self.LayerNorm(F.gelu(self.dense(h), approximate=self.approximate))
        return self.decoder(h) + self.bias


class Bert(DecoderLM):
    """A BERT / RoBERTa / ALBERT encoder (`config.variant`) with optional pooler, MLM and NSP/SOP heads.

    Shares save/load/presets with the decoders (`DecoderLM`), but is bidirectional and has no KV cache.
    """

    is_encoder = True
    family_name = "bert"
    config_class = BertConfig
    presets = PRESETS
    module_paths = {"embed_tokens": "embeddings.word_embeddings", "layers": "blocks", "final_norm": "final_norm"}
    peft_targets = {"query_value": ("q_proj", "v_proj"), "key_value": ("k_proj", "v_proj"),
                    "attention_output": ("o_proj",), "mlp_output": ("mlp.c_proj",)}  # fmt: skip
    peft_fan_in_fan_out = False
    config: BertConfig

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        c = config
        block = BlockConfig(
            n_embd=c.hidden_size,
            n_head=c.num_attention_heads,
            attention=c.attention,
            norm="layernorm",
            norm_eps=c.layer_norm_eps,
            pre_norm=False,
            mlp=c.mlp_kind,
            mlp_hidden=c.intermediate_size,
            dropout=c.hidden_dropout_prob,
            causal=False,
            fused_qkv=False,
        )
        self.embeddings = BertEmbeddings(c)
        self.blocks = nn.ModuleList(Block(block, i) for i in range(self._n_distinct_layers()))
        self.pooler = nn.Linear(c.hidden_size, c.hidden_size) if c.pooler else None
        self.lm_head = MLMHead(c) if c.mlm_head else None  # type: ignore[assignment]
        self.sentence_classifier = nn.Linear(c.hidden_size, 2) if c.sentence_head else None
        self.apply(lambda m: self._init_normal(m, c.initializer_range))
        with torch.no_grad():
            self.embeddings.word_embeddings.weight[c.pad_token_id].zero_()
        self.tie_weights()

    def _n_distinct_layers(self) -> int:
        return self.config.num_hidden_groups if self.config.variant == "albert" else self.config.num_hidden_layers

    def tie_weights(self) -> None:
        """Share the MLM decoder's weight with the word embedding (when tied and the head exists)."""
        if self.lm_head is not None and self.config.tie_word_embeddings:
            self.lm_head.decoder.weight = self.embeddings.word_embeddings.weight

    def layer_at(self, depth: int) -> Block:
        """The layer applied at `depth` (0-based); ALBERT shares one layer across a group of depths."""
        return self.layers[depth * len(self.layers) // self.config.num_hidden_layers]  # type: ignore[return-value]

    # ------------------------------------------------------------------ forward
    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """Encode a batch.

        Args:
            input_ids: (B, T) token ids.
            attention_mask: (B, T) 1 for real tokens, 0 for padding (None: all real). Every row needs a token.
            token_type_ids: (B, T) segment ids (None: zeros).
            position_ids: (B, T) or (T,) (None: 0..T-1; RoBERTa: counted from pad + 1 over non-pad tokens).
            output_hidden_states: also return the embeddings and every layer's output.
            output_attentions: also return every layer's attention weights.
        """
        x = self.embeddings(input_ids, token_type_ids, position_ids)  # (B, T, C)
        mask = None
        if attention_mask is not None and not bool(attention_mask.bool().all()):
            mask = attention_mask.bool()[:, None, None, :]  # (B, 1, 1, T): True = may attend
        hidden: list[torch.Tensor] = [x]
        attentions: list[torch.Tensor] = []
        for depth in range(self.config.num_hidden_layers):
            x, weights, _ = self.layer_at(depth)(x, attn_mask=mask, is_causal=False, output_attentions=output_attentions)
            hidden.append(x)
            if weights is not None:
                attentions.append(weights)
        pooled = torch.tanh(self.pooler(x[:, 0])) if self.pooler is not None else None  # (B, C)
        return EncoderOutput(
            x,
            pooled,
            tuple(hidden) if output_hidden_states else None,
            tuple(attentions) if output_attentions else None,
        )

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.Tensor,
        targets: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        **unused: Any,
    ) -> ModelOutput:
        """Masked-LM logits (B, T, V) at every position (no shift); loss = CE over `targets` != -100.

        `output_hidden_states` returns the last layer's (B, T, C) in `hidden_states` (as the decoders do).
        """
        if self.lm_head is None:
            raise ValueError(
                "this encoder has no masked-LM head (it was loaded from a bare encoder checkpoint); use "
                "model.encode(...) for hidden states, or build it with mlm_head=True to train one"
            )
        out = self.encode(input_ids, attention_mask, token_type_ids, position_ids, output_attentions=output_attentions)
        h = out.last_hidden_state
        logits = self.lm_head(h)  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-100)
        attentions = list(out.attentions) if out.attentions is not None else None
        return ModelOutput(logits, loss, torch.zeros((), device=h.device), attentions, h if output_hidden_states else None)

    def sentence_logits(self, pooler_output: torch.Tensor) -> torch.Tensor:
        """NSP (BERT) / sentence-order (ALBERT) logits (B, 2) from the pooled output (B, C)."""
        if self.sentence_classifier is None:
            raise ValueError("this encoder has no NSP/SOP head; build it with sentence_head=True")
        return self.sentence_classifier(pooler_output)

    def make_kv_cache(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("an encoder (BERT family) has no KV cache: it reads the whole input at once")

    # ------------------------------------------------------------------ save / load
    def export_state_dict(self, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
        """The state dict to save: detached, contiguous, on the CPU, optionally cast; a tied decoder dropped."""
        sd = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if self.config.tie_word_embeddings:
            sd.pop("lm_head.decoder.weight", None)
        if dtype is not None:
            sd = {k: v.to(dtype) for k, v in sd.items()}
        return sd

    @classmethod
    def from_state_dict(cls, config: Any, state_dict: dict[str, torch.Tensor], source: str) -> Bert:
        """A model of `config` holding exactly `state_dict` (a tied decoder may be present or not)."""
        word = state_dict.get("embeddings.word_embeddings.weight")
        if config.tie_word_embeddings and config.mlm_head and word is not None:
            state_dict = {**state_dict, "lm_head.decoder.weight": word}  # the tied copy (saved without it)
        model = super().from_state_dict(config, state_dict, source)
        model.tie_weights()
        return model
