"""BART: learned positions (offset 2), a LayerNorm after the embeddings, post-LN layers, GELU, tied LM head with
`final_logits_bias`. Lewis et al. 2019, "BART: Denoising Sequence-to-Sequence Pre-training",
https://arxiv.org/abs/1910.13461.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from llmlab.models.bart.config import BartConfig
from llmlab.models.bart.presets import PRESETS
from llmlab.models.seq2seq import Seq2SeqLayer, Seq2SeqLM, Seq2SeqStack

POSITION_OFFSET = 2  # fairseq's BART keeps 2 extra position rows; position p uses row p + 2


class Bart(Seq2SeqLM):
    """BartForConditionalGeneration in llmlab form (`encode`, `decode`, `forward` from `Seq2SeqLM`)."""

    family_name = "bart"
    config_class = BartConfig
    presets = PRESETS
    config: BartConfig

    def __init__(self, config: BartConfig) -> None:
        super().__init__(config)
        self.register_buffer("final_logits_bias", torch.zeros(1, config.vocab_size))  # (1, V)

    def _build_stack(self, decoder: bool) -> Seq2SeqStack:
        c = self.config
        spec = c.layer_spec()
        n = c.decoder_layers if decoder else c.n_layer
        layers = [Seq2SeqLayer(spec, cross=decoder, layer_idx=i) for i in range(n)]
        positions = nn.Embedding(c.block_size + POSITION_OFFSET, c.n_embd)
        return Seq2SeqStack(layers, positions, nn.LayerNorm(c.n_embd, eps=c.norm_eps), nn.Identity())

    def _embed(self, input_ids: torch.Tensor, stack: Seq2SeqStack, past: int) -> torch.Tensor:
        t = input_ids.shape[1]
        if past + t > self.config.block_size:
            raise ValueError(f"{past + t} positions exceed BART's block_size={self.config.block_size}; shorten the input")
        scale = math.sqrt(self.config.n_embd) if self.config.scale_embedding else 1.0
        positions = torch.arange(past, past + t, device=input_ids.device) + POSITION_OFFSET  # (T,)
        return self.shared(input_ids) * scale + stack.positions(positions)  # (B, T, C)

    def _lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.lm_head(x) + self.final_logits_bias
