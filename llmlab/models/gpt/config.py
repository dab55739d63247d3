"""`GPTConfig`: every architectural choice of the decoder family in one dataclass (no torch import)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmlab.config.checks import check_minimum
from llmlab.models.registry import config_from_dict

if TYPE_CHECKING:  # llmlab.nn imports torch; this module does not
    from llmlab.nn.block import BlockConfig

ATTENTION_BACKENDS = ("sdpa", "eager", "linear", "local")
POSITIONS = ("learned", "sinusoidal", "rope", "alibi", "none")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "gelu_exact", "swiglu")


@dataclass
class GPTConfig:
    """Configuration of a `GPT` model. Defaults are GPT-2 small (124M).

    Attributes:
        vocab_size: number of token ids.
        block_size: maximum sequence length (context window).
        n_layer: number of Transformer blocks.
        n_head: number of query heads.
        n_kv_head: key/value heads; None = n_head (MHA), 1 = MQA, in between = GQA.
        n_embd: model width.
        dropout: dropout probability (embeddings, attention weights, residual branches).
        bias: biases in linear layers and LayerNorms.
        attention: 'sdpa' | 'eager' | 'linear' | 'local'.
        window_size: local attention window (keys per query incl. itself; each side when not causal).
        n_global_tokens: leading positions with global attention (local attention).
        position: 'learned' | 'sinusoidal' | 'rope' | 'alibi' | 'none'.
        rope_theta: RoPE base.
        norm: 'layernorm' | 'rmsnorm'.
        norm_eps: norm epsilon.
        pre_norm: pre-LN (GPT-2) if True, post-LN (original Transformer) if False.
        mlp: 'gelu' (GPT-2 MLP, tanh GELU) | 'gelu_exact' (erf GELU as nanoGPT, a bit faster) | 'swiglu'.
        mlp_hidden: MLP hidden size; None = 4 * n_embd (gelu) or ~8/3 * n_embd rounded up to 8 (swiglu).
        moe_num_experts: 0 = dense MLP, else a Mixture-of-Experts FFN with this many experts.
        moe_top_k: experts per token.
        moe_aux_loss_coef: weight of the load-balancing loss added to the LM loss.
        tie_embeddings: share the token embedding and the output projection.
        causal: causal (decoder) self-attention; False gives a bidirectional encoder.
        cross_attention: add cross-attention over `encoder_hidden_states` to every block.
    """

    vocab_size: int = 50257
    block_size: int = 1024
    n_layer: int = 12
    n_head: int = 12
    n_kv_head: int | None = None
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True
    attention: str = "sdpa"
    window_size: int | None = None
    n_global_tokens: int = 0
    position: str = "learned"
    rope_theta: float = 10000.0
    norm: str = "layernorm"
    norm_eps: float = 1e-5
    pre_norm: bool = True
    mlp: str = "gelu"
    mlp_hidden: int | None = None
    moe_num_experts: int = 0
    moe_top_k: int = 2
    moe_aux_loss_coef: float = 0.01
    tie_embeddings: bool = True
    causal: bool = True
    cross_attention: bool = False

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_kv_head if self.n_kv_head is not None else self.n_head

    @property
    def hidden_size(self) -> int:
        """The resolved MLP hidden size."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        if self.mlp == "swiglu":
            return ((8 * self.n_embd + 2) // 3 + 7) // 8 * 8
        return 4 * self.n_embd

    def resolved(self) -> GPTConfig:
        """A copy with every None-means-default field set to its effective value (`n_kv_head`, `mlp_hidden`).

        Two configs that build the same architecture compare equal after `resolved()` (e.g. a preset and the
        config read back from its Hugging Face export).
        """
        return dataclasses.replace(self, n_kv_head=self.kv_heads, mlp_hidden=self.hidden_size)

    def block_config(self) -> BlockConfig:
        """The architecture of one Transformer block of this model."""
        from llmlab.nn.block import BlockConfig

        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(BlockConfig) if hasattr(self, f.name)}
        return BlockConfig(**{**shared, "mlp_hidden": self.hidden_size})

    def validate(self) -> None:
        """Raise ValueError (one line naming the field and the fix) if the configuration is inconsistent."""
        check_minimum(
            "model", self, ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"), 1, "must be a positive integer"
        )
        for name, value, valid in (
            ("attention", self.attention, ATTENTION_BACKENDS),
            ("position", self.position, POSITIONS),
            ("norm", self.norm, NORMS),
            ("mlp", self.mlp, MLPS),
        ):
            if value not in valid:
                raise ValueError(f"unknown model.{name} '{value}'; choose one of: {', '.join(valid)}")
        if self.n_embd % self.n_head != 0:
            raise ValueError(
                f"model.n_embd={self.n_embd} must be divisible by model.n_head={self.n_head}; change one of them"
            )
        if self.n_kv_head is not None and (self.n_kv_head < 1 or self.n_head % self.n_kv_head != 0):
            raise ValueError(
                f"model.n_head={self.n_head} must be a multiple of model.n_kv_head={self.n_kv_head} "
                "(use n_kv_head=1 for MQA or a divisor of n_head for GQA)"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if self.position == "rope" and self.head_dim % 2 != 0:
            raise ValueError(
                f"position='rope' needs an even head dimension, got n_embd/n_head={self.head_dim}; "
                "change n_embd or n_head"
            )
        if self.position == "rope" and self.rope_theta <= 0:
            raise ValueError(f"model.rope_theta must be positive, got {self.rope_theta}")
        if self.attention == "local" and (self.window_size is None or self.window_size < 1):
            raise ValueError(f"attention='local' needs model.window_size >= 1, got {self.window_size}")
        if self.n_global_tokens < 0:
            raise ValueError(f"model.n_global_tokens must be >= 0, got {self.n_global_tokens}")
        if self.attention == "linear" and self.position == "alibi":
            raise ValueError("position='alibi' biases softmax scores and does not work with attention='linear'")
        if self.norm_eps <= 0:
            raise ValueError(f"model.norm_eps must be positive, got {self.norm_eps}")
        if self.mlp_hidden is not None and self.mlp_hidden < 1:
            raise ValueError(f"model.mlp_hidden must be positive or null (auto), got {self.mlp_hidden}")
        if self.moe_num_experts < 0:
            raise ValueError(f"model.moe_num_experts must be >= 0 (0 = dense MLP), got {self.moe_num_experts}")
        if self.moe_num_experts > 0 and not 1 <= self.moe_top_k <= self.moe_num_experts:
            raise ValueError(
                f"model.moe_top_k={self.moe_top_k} must be between 1 and model.moe_num_experts={self.moe_num_experts}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build and validate a config from a dict; unknown keys raise ValueError naming them.

        A `"family"` key (written by `save_pretrained` so `llmlab.models.load_model` can dispatch) must
        say `gpt`.
        """
        return config_from_dict(cls, d, "gpt")
