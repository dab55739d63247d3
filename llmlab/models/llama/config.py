"""`LlamaConfig`: the Llama architecture with Hugging Face field names (no torch import).

Field names and defaults follow `transformers.LlamaConfig` so a Hugging Face `config.json` maps onto this
dataclass almost key for key (see `llmlab.models.llama.hf.config_from_hf`). A few read-only aliases
(`block_size`, `n_layer`, `n_head`, `n_kv_head`, `n_embd`) let code written for `GPTConfig` (the
generation loop, perplexity) use a Llama unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from llmlab.config.checks import check_minimum
from llmlab.models.registry import config_from_dict

FAMILY = "llama"
ATTENTION_BACKENDS = ("sdpa", "eager")
ROPE_TYPES = ("default", "linear", "dynamic", "llama3")
# Keys each RoPE scaling type needs (besides `rope_type` and `factor`).
_ROPE_REQUIRED = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
}


@dataclass
class LlamaConfig:
    """Configuration of a `Llama` model. Defaults are a tiny model; see `llmlab.models.llama.presets`.

    Attributes:
        vocab_size: number of token ids.
        hidden_size: model width C.
        intermediate_size: SwiGLU hidden size.
        num_hidden_layers: number of decoder layers.
        num_attention_heads: query heads.
        num_key_value_heads: key/value heads (None = num_attention_heads; fewer = GQA, 1 = MQA).
        head_dim: size of one head (None = hidden_size // num_attention_heads).
        max_position_embeddings: context window.
        rms_norm_eps: RMSNorm epsilon.
        rope_theta: RoPE base.
        rope_scaling: None or an HF `rope_scaling` dict: `{"rope_type": "linear"|"dynamic", "factor": f}` or
            `{"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
            "original_max_position_embeddings"}` (see `llmlab.models.llama.rope`).
        tie_word_embeddings: share the token embedding with the output layer.
        attention_bias: biases in q/k/v/o projections (Qwen-style); Llama has none.
        mlp_bias: biases in the SwiGLU projections.
        attention_dropout: dropout on attention weights (and the attention output) during training.
        hidden_act: the MLP activation; only "silu" (SwiGLU) is implemented.
        initializer_range: std of the normal init.
        attention: 'sdpa' (fused kernel) or 'eager' (explicit softmax; can return attention weights).
        bos_token_id, eos_token_id, pad_token_id: special ids (informational; used by generation).
    """

    vocab_size: int = 32000
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    max_position_embeddings: int = 2048
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_scaling: dict[str, Any] | None = None
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    mlp_bias: bool = False
    attention_dropout: float = 0.0
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    attention: str = "sdpa"
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    pad_token_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    """Free-form notes carried along (e.g. `{"source": "model.gguf"}`); not used by the model."""

    # ---- aliases used by family-agnostic code (generation, evaluation) -------------------------------------
    @property
    def block_size(self) -> int:
        return self.max_position_embeddings

    @property
    def n_layer(self) -> int:
        return self.num_hidden_layers

    @property
    def n_head(self) -> int:
        return self.num_attention_heads

    @property
    def n_kv_head(self) -> int:
        return self.kv_heads

    @property
    def n_embd(self) -> int:
        return self.hidden_size

    @property
    def tie_embeddings(self) -> bool:
        return self.tie_word_embeddings

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads

    @property
    def rope_type(self) -> str:
        if not self.rope_scaling:
            return "default"
        return str(self.rope_scaling.get("rope_type", self.rope_scaling.get("type", "default")))

    def resolved(self) -> LlamaConfig:
        """A copy with every None-means-default field set to its effective value (`num_key_value_heads`, `head_dim`).

        Two configs that build the same architecture compare equal after `resolved()` (e.g. the `smollm2-135m`
        preset and the config read back from its Hugging Face export, which states both).
        """
        return dataclasses.replace(self, num_key_value_heads=self.kv_heads, head_dim=self.resolved_head_dim)

    def validate(self) -> None:
        """Raise ValueError (one line naming the field and the fix) if the configuration is inconsistent."""
        check_minimum(
            "model",
            self,
            ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads"),
            1,
            "must be a positive integer",
        )
        if self.max_position_embeddings < 1:
            raise ValueError(f"model.max_position_embeddings must be positive, got {self.max_position_embeddings}")
        if self.num_key_value_heads is not None and (
            self.num_key_value_heads < 1 or self.num_attention_heads % self.num_key_value_heads != 0
        ):
            raise ValueError(
                f"model.num_attention_heads={self.num_attention_heads} must be a multiple of "
                f"model.num_key_value_heads={self.num_key_value_heads} (a divisor gives GQA, 1 gives MQA)"
            )
        if self.head_dim is None and self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"model.hidden_size={self.hidden_size} is not divisible by num_attention_heads="
                f"{self.num_attention_heads}; change one of them or set head_dim"
            )
        if self.resolved_head_dim % 2 != 0:
            raise ValueError(f"RoPE needs an even head dimension, got {self.resolved_head_dim}; change head_dim")
        if self.hidden_act != "silu":
            raise ValueError(f"model.hidden_act '{self.hidden_act}' is not supported; llmlab's Llama uses 'silu'")
        if self.attention not in ATTENTION_BACKENDS:
            raise ValueError(
                f"unknown model.attention '{self.attention}'; choose one of: {', '.join(ATTENTION_BACKENDS)}"
            )
        if self.rope_theta <= 0:
            raise ValueError(f"model.rope_theta must be positive, got {self.rope_theta}")
        if self.rms_norm_eps <= 0:
            raise ValueError(f"model.rms_norm_eps must be positive, got {self.rms_norm_eps}")
        if not 0.0 <= self.attention_dropout < 1.0:
            raise ValueError(f"model.attention_dropout must be in [0, 1), got {self.attention_dropout}")
        if self.rope_scaling:
            kind = self.rope_type
            if kind not in ROPE_TYPES:
                raise ValueError(
                    f"rope_scaling type '{kind}' is not supported; llmlab implements: {', '.join(ROPE_TYPES)}"
                )
            missing = [k for k in _ROPE_REQUIRED[kind] if k not in self.rope_scaling]
            if missing:
                raise ValueError(f"rope_scaling of type '{kind}' lacks {', '.join(missing)}")
            if "factor" in self.rope_scaling and float(self.rope_scaling["factor"]) < 1.0:
                raise ValueError(f"rope_scaling factor must be >= 1, got {self.rope_scaling['factor']}")

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict, with `"family": "llama"` so `llmlab.models.load_model` can dispatch."""
        return {"family": FAMILY, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LlamaConfig:
        """Build and validate a config from a dict (as written by `to_dict`); unknown keys raise ValueError."""
        return config_from_dict(cls, d, FAMILY)
