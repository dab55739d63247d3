"""Tiny random Hugging Face T5/BART models and their llmlab conversions, shared by the seq2seq tests."""

from __future__ import annotations

from pathlib import Path

import torch

from llmlab.models import load_model


def tiny_hf_t5(kind: str = "relu", seed: int = 0, tied: bool | None = None, decoder_layers: int = 2):
    """A random `transformers` T5ForConditionalGeneration (eval mode): v1.0 'relu' (tied) or v1.1 'gated-gelu'
    (untied head, no rescale). `decoder_layers` != 2 makes the stacks differ (transformers' generate cannot run
    that: its cache is sized by the encoder's layers)."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    tied = (kind == "relu") if tied is None else tied
    config = T5Config(
        vocab_size=96, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=decoder_layers, num_heads=4,
        feed_forward_proj=kind, relative_attention_num_buckets=8, relative_attention_max_distance=20,
        tie_word_embeddings=tied, dropout_rate=0.0, decoder_start_token_id=0,
    )  # fmt: skip
    model = T5ForConditionalGeneration(config).eval()
    if not tied:  # transformers 5 ties the head anyway unless the weights differ
        model.lm_head.weight = torch.nn.Parameter(torch.randn(96, 32))
    return model


def tiny_hf_bart(seed: int = 0, scale_embedding: bool = True):
    """A random `transformers` BartForConditionalGeneration (eval mode) with a non-zero final_logits_bias."""
    from transformers import BartConfig, BartForConditionalGeneration

    torch.manual_seed(seed)
    config = BartConfig(
        vocab_size=96, d_model=32, encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=48,
        decoder_ffn_dim=48, encoder_layers=2, decoder_layers=2, max_position_embeddings=64, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, forced_eos_token_id=None, scale_embedding=scale_embedding,
    )  # fmt: skip
    model = BartForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.final_logits_bias.normal_(std=0.1)
    return model


def to_llmlab(hf_model, folder: Path):
    """Save the HF model into `folder` and load it back as an llmlab model (through `load_model`)."""
    hf_model.save_pretrained(folder)
    return load_model(folder)


def sources(vocab: int = 96, low: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Three right-padded source rows (lengths 11, 7, 4) and their attention mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(low, vocab, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    for row, length in ((1, 7), (2, 4)):
        mask[row, length:] = 0
        ids[row, length:] = 0
    return ids, mask


def hf_generated(hf_model, ids: torch.Tensor, mask: torch.Tensor, **kwargs) -> list[list[int]]:
    """`transformers`' generate, as llmlab returns it: the start token dropped, cut after the first EOS."""
    out = hf_model.generate(input_ids=ids, attention_mask=mask, do_sample=False, **kwargs)
    eos = kwargs.get("eos_token_id", hf_model.config.eos_token_id)
    rows = []
    for row in out[:, 1:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def spread(hf_model, std: float, seed: int = 5):
    """Redraw every weight matrix with N(0, std): a random tiny model's default init generates one repeated
    token; wider weights give varied outputs, so generation tests compare something."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in hf_model.parameters():
            if p.dim() == 2:
                p.normal_(std=std)
    return hf_model
