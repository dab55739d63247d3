"""T5: pre-norm RMS layers, relative position buckets (bias computed once per stack and shared by its layers),
no 1/sqrt(d) score scaling, ReLU (v1.0) or gated-GELU (v1.1) feed-forward, tied or untied LM head.

Raffel et al. 2019, "Exploring the Limits of Transfer Learning with a Unified Text-to-Text Transformer",
https://arxiv.org/abs/1910.10683; v1.1: https://github.com/google-research/text-to-text-transfer-transformer/blob/main/released_checkpoints.md
"""

from __future__ import annotations

import torch
from torch import nn

from llmlab.models.seq2seq import Seq2SeqLayer, Seq2SeqLM, Seq2SeqStack
from llmlab.models.t5.config import T5Config
from llmlab.models.t5.presets import PRESETS
from llmlab.nn.norms import RMSNorm
from llmlab.nn.positions import relative_position_bucket


class T5(Seq2SeqLM):
    """T5ForConditionalGeneration in llmlab form (`encode`, `decode`, `forward` from `Seq2SeqLM`)."""

    family_name = "t5"
    config_class = T5Config
    presets = PRESETS
    config: T5Config

    def _build_stack(self, decoder: bool) -> Seq2SeqStack:
        c = self.config
        spec = c.layer_spec()
        n = c.decoder_layers if decoder else c.n_layer
        layers = [Seq2SeqLayer(spec, cross=decoder, layer_idx=i) for i in range(n)]
        bias_table = nn.Embedding(c.relative_attention_num_buckets, c.n_head)  # (buckets, nh)
        return Seq2SeqStack(layers, bias_table, nn.Identity(), RMSNorm(c.n_embd, c.norm_eps))

    def _embed(self, input_ids: torch.Tensor, stack: Seq2SeqStack, past: int) -> torch.Tensor:
        return self.shared(input_ids)  # positions enter as the attention bias

    def _position_bias(self, stack: Seq2SeqStack, t: int, s: int, past: int) -> torch.Tensor:
        """(1, nh, T, S) bias of keys 0..S-1 seen from queries past..past+T-1 (bidirectional in the encoder)."""
        device = stack.positions.weight.device
        query = torch.arange(past, past + t, device=device)[:, None]
        key = torch.arange(s, device=device)[None, :]
        c = self.config
        buckets = relative_position_bucket(
            key - query, stack is self.encoder, c.relative_attention_num_buckets, c.relative_attention_max_distance
        )  # (T, S)
        return stack.positions(buckets).permute(2, 0, 1).unsqueeze(0)  # (1, nh, T, S)

    def _lm_logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.config.tie_embeddings:
            x = x * self.config.n_embd**-0.5  # the tied head's rescale
        return self.lm_head(x)

    def init_weights(self) -> None:
        """HF/Mesh-TF T5 init: embeddings N(0, 1), projections N(0, fan_in**-0.5) (queries also / head_dim)."""
        c = self.config
        inner = c.n_head * c.head_dim
        for name, module in self.named_modules():
            if isinstance(module, nn.Embedding):
                std = 1.0 if module is self.shared else c.n_embd**-0.5
                nn.init.normal_(module.weight, std=std)
            elif isinstance(module, nn.Linear) and module is not self.lm_head:
                std = module.in_features**-0.5
                if name.endswith("q_proj"):
                    std = (c.n_embd * c.head_dim) ** -0.5
                elif name.endswith("o_proj"):
                    std = inner**-0.5
                nn.init.normal_(module.weight, std=std)
        if not c.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=1.0)
