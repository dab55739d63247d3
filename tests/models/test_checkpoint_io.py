"""Shared model-folder I/O: loading skips the random init that the checkpoint overwrites."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama
from torch import nn

from llmlab.models.checkpoint_io import skip_weight_init


def test_skip_weight_init_leaves_tensors_alone_and_restores_init() -> None:
    t = torch.zeros(3, 4)
    with skip_weight_init():
        assert nn.init.normal_(t) is t and nn.init.kaiming_uniform_(t, a=5**0.5) is t
        assert torch.equal(t, torch.zeros(3, 4))
    nn.init.normal_(t)
    assert t.abs().sum() > 0  # restored
    with pytest.raises(RuntimeError, match="boom"), skip_weight_init():
        raise RuntimeError("boom")
    nn.init.zeros_(t)
    assert torch.equal(t, torch.zeros(3, 4))  # restored after an exception too


def test_loaded_models_equal_the_saved_ones(tmp_path: Path) -> None:
    """Built inside skip_weight_init, every parameter and buffer still comes out equal to the saved model."""
    models = [tiny_gpt(vocab_size=64, block_size=16, n_head=4), tiny_llama(vocab_size=64, max_position_embeddings=32)]
    x = torch.randint(0, 64, (2, 8))
    for i, model in enumerate(models):
        model.eval().save_pretrained(tmp_path / str(i))
        loaded = type(model).from_pretrained(tmp_path / str(i)).eval()
        for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
            assert torch.equal(a, b), name
        for (name, a), (_, b) in zip(model.named_buffers(), loaded.named_buffers(), strict=True):
            assert torch.equal(a, b), name  # non-persistent buffers (RoPE tables) are rebuilt, not loaded
        with torch.no_grad():
            assert torch.equal(loaded(x).logits, model(x).logits)
