"""Tiny seeded models of both families and a training helper for the PEFT tests."""

from __future__ import annotations

import tiny_models
import torch

from llmlab.models.gpt import GPT
from llmlab.models.llama import Llama

VOCAB = tiny_models.TINY_VOCAB


def tiny_gpt(seed: int = 0, **overrides: object) -> GPT:
    """GPT-2 style (LayerNorm, GELU MLP, learned positions, fused c_attn with biases): `nano-char` with 4 heads."""
    return tiny_models.tiny_gpt(seed, **{"vocab_size": VOCAB, "n_head": 4, **overrides})


def tiny_gpt_llamalike(seed: int = 0) -> GPT:
    """A Llama-like GPT: RMSNorm, SwiGLU, RoPE, GQA (2 kv heads), no biases."""
    return tiny_gpt(seed, norm="rmsnorm", mlp="swiglu", position="rope", n_kv_head=2, bias=False)


def tiny_llama(seed: int = 0, **overrides: object) -> Llama:
    """The Llama family with HF names (q_proj, ..., gate_proj), GQA, untied embeddings."""
    fields = {"vocab_size": VOCAB, "max_position_embeddings": 64, "tie_word_embeddings": False, **overrides}
    return tiny_models.tiny_llama(seed, **fields)


FAMILIES = {"gpt": tiny_gpt, "gpt_llamalike": tiny_gpt_llamalike, "llama": tiny_llama}


def train_steps(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 5, lr: float = 1e-2
) -> list[float]:
    """A few AdamW steps on the trainable parameters; returns the losses (before each step)."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    for _ in range(steps):
        loss = model(x, y).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def sharpen(model: torch.nn.Module, factor: float = 5.0) -> torch.nn.Module:
    """Scale every weight matrix by `factor`: a random tiny model at std 0.02 is so flat that methods acting
    only through attention (prefix/prompt tuning) barely move its loss in a few steps."""
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(factor)
    return model
