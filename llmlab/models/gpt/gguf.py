"""GGUF (llama.cpp `gpt2` architecture) files <-> llmlab `GPT` (plain GPT-2 only).

llama.cpp stores GPT-2's `Conv1D` matrices as (out, in), the `nn.Linear` layout, so through HF names
(`llmlab.models.gpt.hf`, where they are (in, out)) those four per-layer weights are transposed in both directions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from llmlab.io.gguf import GGUFFile, read_gguf, write_gguf
from llmlab.models.formats.gguf_names import TensorNames, gguf_to_hf, hf_to_gguf
from llmlab.models.gpt.config import GPTConfig
from llmlab.models.gpt.hf import check_plain_gpt2, gpt2_state_dict_from_hf, gpt2_state_dict_to_hf
from llmlab.models.gpt.model import GPT

GGUF_ARCHITECTURE = "gpt2"
GPT2_NAMES = TensorNames(
    family="GPT-2",
    hf_layers="transformer.h",
    layer={
        "attn_norm": "ln_1",
        "attn_qkv": "attn.c_attn",
        "attn_output": "attn.c_proj",
        "ffn_norm": "ln_2",
        "ffn_up": "mlp.c_fc",
        "ffn_down": "mlp.c_proj",
    },
    globals={
        "token_embd": "transformer.wte",
        "position_embd": "transformer.wpe",
        "output_norm": "transformer.ln_f",
        "output": "lm_head",
    },
    hf_skipped=(".attn.bias", ".attn.masked_bias"),  # causal-mask buffers of old HF checkpoints
)
_CONV1D = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"}  # HF Conv1D: weight is (in, out)


def _transpose_conv1d(part: str, kind: str, w: torch.Tensor) -> torch.Tensor:
    return w.t().contiguous() if part in _CONV1D and kind == "weight" else w


def gguf_to_hf_gpt2(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a llama.cpp GPT-2 state dict to HF `GPT2LMHeadModel` names (transposing Conv1D weights)."""
    return gguf_to_hf(tensors, GPT2_NAMES, _transpose_conv1d)


def hf_to_gguf_gpt2(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an HF `GPT2LMHeadModel` state dict to llama.cpp names (inverse of `gguf_to_hf_gpt2`).

    llama.cpp's converter always writes `output.weight` (a copy of the embedding when tied), so it is kept here too.
    """
    out = hf_to_gguf(state_dict, GPT2_NAMES, _transpose_conv1d)
    if "output.weight" not in out and "token_embd.weight" in out:
        out["output.weight"] = out["token_embd.weight"]
    return out


def load_gguf_gpt2(source: str | os.PathLike | GGUFFile, device: torch.device | str = "cpu") -> GPT:
    """A float32 `GPT` from a llama.cpp `gpt2` GGUF file (path or already-read `GGUFFile`)."""
    f = source if isinstance(source, GGUFFile) else read_gguf(source)
    md = f.metadata
    try:
        n_embd = int(md["gpt2.embedding_length"])
        config = GPTConfig(
            vocab_size=f.tensor_shapes["token_embd.weight"][0],
            block_size=int(md["gpt2.context_length"]),
            n_layer=int(md["gpt2.block_count"]),
            n_head=int(md["gpt2.attention.head_count"]),
            n_embd=n_embd,
            norm_eps=float(md.get("gpt2.attention.layer_norm_epsilon", 1e-5)),
            mlp_hidden=int(md.get("gpt2.feed_forward_length", 4 * n_embd)),
        )
    except KeyError as e:
        raise ValueError(f"{f.path} lacks the GPT-2 metadata key {e}") from None
    hf_sd = gguf_to_hf_gpt2(f.tensors)
    out = hf_sd.get("lm_head.weight")
    config.tie_embeddings = out is None or torch.equal(out, hf_sd["transformer.wte.weight"])
    config.validate()
    sd = gpt2_state_dict_from_hf(hf_sd, config)
    model = GPT.from_state_dict(config, sd, str(f.path))
    return model.to(device).eval()


def save_gguf_gpt2(
    model: GPT,
    path: str | os.PathLike,
    dtype: str = "F32",
    extra_metadata: Mapping[str, Any] | None = None,
    metadata_types: Mapping[str, str] | None = None,
) -> None:
    """Write a plain GPT-2 `model` as a llama.cpp `gpt2` GGUF file, atomically (`dtype` "F32" | "F16" | "Q8_0")."""
    c = model.config
    check_plain_gpt2(c)
    hf_sd = gpt2_state_dict_to_hf(model)
    if c.tie_embeddings:
        hf_sd["lm_head.weight"] = hf_sd["transformer.wte.weight"]
    metadata: dict[str, Any] = {
        "general.name": "llmlab-gpt2",
        "gpt2.context_length": c.block_size,
        "gpt2.embedding_length": c.n_embd,
        "gpt2.feed_forward_length": c.hidden_size,
        "gpt2.block_count": c.n_layer,
        "gpt2.attention.head_count": c.n_head,
        "gpt2.attention.layer_norm_epsilon": float(c.norm_eps),
        **(extra_metadata or {}),
    }
    write_gguf(path, GGUF_ARCHITECTURE, metadata, hf_to_gguf_gpt2(hf_sd), dtype, metadata_types=metadata_types)
