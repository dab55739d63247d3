"""`T5Config`: the T5 encoder-decoder's architecture (v1.0 ReLU or v1.1 gated-GELU feed-forward)."""

from __future__ import annotations

from dataclasses import dataclass

from llmlab.models.seq2seq import LayerSpec, Seq2SeqConfig


@dataclass
class T5Config(Seq2SeqConfig):
    """T5 (Raffel et al. 2019, https://arxiv.org/abs/1910.10683); fields of `Seq2SeqConfig` plus:

    Attributes:
        relative_attention_num_buckets: buckets of the relative position bias (HF default 32).
        relative_attention_max_distance: distances from here on share the last bucket (128).

    `mlp` 'relu' is T5 v1.0 (HF feed_forward_proj "relu"), 'gated-gelu' is v1.1 (GEGLU). With tied embeddings
    the decoder output is multiplied by n_embd**-0.5 before the LM head (as HF and Mesh TensorFlow do).
    """

    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128

    def validate(self) -> None:
        super().validate()
        if self.mlp not in ("relu", "gated-gelu"):
            raise ValueError(f"T5Config.mlp must be 'relu' (v1.0) or 'gated-gelu' (v1.1), got {self.mlp!r}")
        if self.relative_attention_num_buckets < 2 or self.relative_attention_max_distance < 2:
            raise ValueError("T5Config.relative_attention_num_buckets and _max_distance must be >= 2")

    def layer_spec(self) -> LayerSpec:
        """Pre-norm RMS layers without biases; scores are not divided by sqrt(head_dim)."""
        return LayerSpec(
            n_embd=self.n_embd, n_head=self.n_head, head_dim=self.head_dim, d_ff=self.d_ff, mlp=self.mlp,
            norm="rmsnorm", norm_eps=self.norm_eps, pre_norm=True, bias=False, attn_scale=1.0, dropout=self.dropout,
        )  # fmt: skip
