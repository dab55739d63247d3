"""llmlab.nn: reusable Transformer components (attention backends, positions, norms, MLPs, MoE, KV cache)."""

from llmlab.nn.attention import ATTENTION_BACKENDS, Attention, eager_attention, repeat_kv
from llmlab.nn.block import Block, BlockConfig
from llmlab.nn.kv_cache import KVCache
from llmlab.nn.linear_attention import linear_attention, linear_attention_quadratic
from llmlab.nn.masks import build_attention_mask
from llmlab.nn.mlp import GELUMLP, MLPS, SwiGLUMLP, build_mlp, default_mlp_hidden
from llmlab.nn.moe import MoE
from llmlab.nn.norms import NORMS, RMSNorm, build_norm
from llmlab.nn.positions import POSITIONS, alibi_bias, alibi_slopes, apply_rope, rope_cos_sin, sinusoidal_table

__all__ = [
    "ATTENTION_BACKENDS",
    "MLPS",
    "NORMS",
    "POSITIONS",
    "Attention",
    "Block",
    "BlockConfig",
    "GELUMLP",
    "KVCache",
    "MoE",
    "RMSNorm",
    "SwiGLUMLP",
    "alibi_bias",
    "alibi_slopes",
    "apply_rope",
    "build_attention_mask",
    "build_mlp",
    "build_norm",
    "default_mlp_hidden",
    "eager_attention",
    "linear_attention",
    "linear_attention_quadratic",
    "repeat_kv",
    "rope_cos_sin",
    "sinusoidal_table",
]
