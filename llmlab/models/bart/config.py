"""`BartConfig`: the BART encoder-decoder's architecture."""

from __future__ import annotations

from dataclasses import dataclass

from llmlab.models.seq2seq import LayerSpec, Seq2SeqConfig


@dataclass
class BartConfig(Seq2SeqConfig):
    """BART (Lewis et al. 2019, https://arxiv.org/abs/1910.13461); fields of `Seq2SeqConfig` plus:

    Attributes:
        scale_embedding: multiply token embeddings by sqrt(n_embd).
        bos_token_id: the beginning-of-sequence id (<s>).

    Learned positions (block_size of them, stored with BART's offset of 2 rows), post-LN layers with biases,
    a LayerNorm after the embeddings (`layernorm_embedding`), exact GELU, a `final_logits_bias`.
    """

    vocab_size: int = 50265
    n_embd: int = 768
    n_head: int = 12
    head_dim: int = 64
    d_ff: int = 3072
    block_size: int = 1024
    norm_eps: float = 1e-5
    mlp: str = "gelu_exact"
    bos_token_id: int = 0
    pad_token_id: int = 1
    eos_token_id: int = 2
    decoder_start_token_id: int = 2
    scale_embedding: bool = False

    def validate(self) -> None:
        super().validate()
        if self.mlp not in ("gelu_exact", "gelu", "relu"):
            raise ValueError(f"BartConfig.mlp must be 'gelu_exact' (HF gelu), 'gelu' (gelu_new) or 'relu', got {self.mlp!r}")

    def layer_spec(self) -> LayerSpec:
        """Post-LN LayerNorm layers with biases; scores scaled by 1/sqrt(head_dim)."""
        return LayerSpec(
            n_embd=self.n_embd, n_head=self.n_head, head_dim=self.head_dim, d_ff=self.d_ff, mlp=self.mlp,
            norm="layernorm", norm_eps=self.norm_eps, pre_norm=False, bias=True, attn_scale=None, dropout=self.dropout,
        )  # fmt: skip
