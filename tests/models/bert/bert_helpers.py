"""Tiny seeded Hugging Face BERT / RoBERTa / ALBERT models (random weights) for the conversion tests."""

from __future__ import annotations

import torch

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # fmt: skip


def tiny_hf(arch: str, seed: int = 0):  # -> a transformers PreTrainedModel in eval mode
    """A random tiny `transformers` model of class `arch` (e.g. "AlbertForPreTraining"), LayerNorms perturbed
    so that a mapping mistake between two norms shows."""
    import transformers

    torch.manual_seed(seed)
    if arch.startswith("Roberta"):
        config = transformers.RobertaConfig(**TINY, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)
    elif arch.startswith("Albert"):
        config = transformers.AlbertConfig(**{**TINY, "num_hidden_layers": 4}, embedding_size=16, num_hidden_groups=2)
    else:
        config = transformers.BertConfig(**TINY)
    model = getattr(transformers, arch)(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    return model


def tiny_batch(vocab: int = 99, pad_id: int = 0, seed: int = 1) -> dict[str, torch.Tensor]:
    """Two rows, the second right-padded, with two token types."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0
    ids[1, 6:] = pad_id
    types = torch.zeros(2, 9, dtype=torch.long)
    types[:, 4:] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types * mask}
