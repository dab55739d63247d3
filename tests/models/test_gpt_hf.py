"""Loading HF GPT-2 checkpoints: logits match `transformers` (the oracle; imported only here)."""

import json

import pytest
import torch
from tiny_models import tiny_hf_gpt2

from llmlab.models.gpt.hf import config_from_hf_gpt2, gpt2_state_dict_from_hf, load_hf_gpt2


def _hf_model(tmp_path, **kw):
    model = tiny_hf_gpt2(0, n_positions=16, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **kw)
    with torch.no_grad():  # make biases and norms non-trivial so a mapping mistake shows up
        for name, p in model.named_parameters():
            if name.endswith("bias") or "ln_" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("max_shard_size", [None, "20KB"])
def test_load_hf_gpt2_logits_match(tmp_path, max_shard_size):
    hf = _hf_model(tmp_path)
    kw = {"max_shard_size": max_shard_size} if max_shard_size else {}
    hf.save_pretrained(tmp_path, **kw)
    if max_shard_size:
        assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = load_hf_gpt2(tmp_path).eval()
    assert ours.config.n_layer == 2 and ours.config.block_size == 16 and ours.config.tie_embeddings
    x = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf(x).logits
        got = ours(x).logits
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # the loss agrees too (HF shifts labels internally)
    with torch.no_grad():
        ref_loss = hf(x, labels=x).loss
        y = torch.cat([x[:, 1:], torch.full((2, 1), -100)], dim=1)
        torch.testing.assert_close(ours(x, y).loss, ref_loss, rtol=1e-4, atol=1e-4)


def test_load_hf_gpt2_with_cross_attention(tmp_path):
    hf = _hf_model(tmp_path, add_cross_attention=True)
    hf.save_pretrained(tmp_path)
    ours = load_hf_gpt2(tmp_path).eval()
    assert ours.config.cross_attention
    x = torch.randint(0, 64, (2, 7))
    enc = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            ours(x, encoder_hidden_states=enc).logits, hf(x, encoder_hidden_states=enc).logits, rtol=1e-4, atol=1e-4
        )


def test_state_dict_mapping_without_prefix_and_with_buffers():
    cfg = config_from_hf_gpt2({"vocab_size": 10, "n_positions": 8, "n_layer": 1, "n_head": 2, "n_embd": 4})
    w = torch.randn(4, 12)  # Conv1D (in, out)
    sd = {"h.0.attn.c_attn.weight": w, "h.0.attn.bias": torch.ones(1, 1, 8, 8), "wte.weight": torch.randn(10, 4)}
    out = gpt2_state_dict_from_hf(sd, cfg)
    assert set(out) == {"transformer.h.0.attn.c_attn.weight", "transformer.wte.weight"}
    assert torch.equal(out["transformer.h.0.attn.c_attn.weight"], w.t())


def test_hf_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf_gpt2(tmp_path)
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "gpt2", "vocab_size": 10, "n_layer": 1, "n_head": 2, "n_embd": 4})
    )
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_hf_gpt2(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_hf_gpt2(tmp_path)
    with pytest.raises(ValueError, match="activation_function"):
        config_from_hf_gpt2({"vocab_size": 10, "n_layer": 1, "n_head": 2, "n_embd": 4, "activation_function": "relu"})
    with pytest.raises(ValueError, match="model_type"):
        config_from_hf_gpt2({"model_type": "llama"})
