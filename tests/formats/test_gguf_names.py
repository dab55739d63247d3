"""llama.cpp <-> Hugging Face names, the RoPE q/k row permutation and the config, checked against `transformers`."""

from pathlib import Path

import pytest
import torch
from tiny_models import tiny_hf_gpt2, tiny_hf_llama

from llmlab.io.gguf import read_gguf, write_gguf
from llmlab.models.gpt.gguf import gguf_to_hf_gpt2, hf_to_gguf_gpt2
from llmlab.models.llama.gguf import (
    gguf_to_hf_llama,
    hf_config_from_gguf_llama,
    hf_to_gguf_llama,
    llama_metadata_from_hf_config,
)


@pytest.fixture(scope="module")
def hf_smollm2(smollm2_transformers):
    return smollm2_transformers


def test_smollm2_state_dict_and_config_match_transformers(smollm2_file, hf_smollm2) -> None:
    cfg = hf_config_from_gguf_llama(smollm2_file.metadata, set(smollm2_file.tensors))
    ours = gguf_to_hf_llama(smollm2_file.tensors, cfg)
    theirs = hf_smollm2.state_dict()
    assert set(theirs) - set(ours) == {"lm_head.weight"} and set(ours) <= set(theirs)  # tied: lm_head is embed
    mismatched = [name for name, t in ours.items() if not torch.equal(t, theirs[name])]  # bit-identical
    assert mismatched == []

    hf = hf_smollm2.config
    for key in (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "rms_norm_eps",
        "max_position_embeddings",
        "tie_word_embeddings",
        "bos_token_id",
        "eos_token_id",
        "pad_token_id",
    ):
        assert cfg[key] == getattr(hf, key), key
    assert cfg["rope_theta"] == hf.rope_parameters["rope_theta"] == 100000.0
    assert (cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["tie_word_embeddings"]) == (9, 3, True)


def test_rope_permutation_round_trips_and_is_not_identity() -> None:
    torch.manual_seed(0)
    cfg = {"num_attention_heads": 4, "num_key_value_heads": 2}
    sd = {
        "model.layers.0.self_attn.q_proj.weight": torch.randn(32, 32),
        "model.layers.0.self_attn.k_proj.weight": torch.randn(16, 32),
        "model.layers.0.self_attn.k_proj.bias": torch.randn(16),
        "model.layers.0.self_attn.v_proj.weight": torch.randn(16, 32),
        "lm_head.weight": torch.randn(8, 32),
    }
    g = hf_to_gguf_llama(sd, cfg)
    assert set(g) == {
        "blk.0.attn_q.weight",
        "blk.0.attn_k.weight",
        "blk.0.attn_k.bias",
        "blk.0.attn_v.weight",
        "output.weight",
    }
    assert not torch.equal(g["blk.0.attn_q.weight"], sd["model.layers.0.self_attn.q_proj.weight"])
    # head 0 of k (head_dim 8): HF rows (0..3 | 4..7) interleave to (0, 4, 1, 5, 2, 6, 3, 7) in llama.cpp
    k = sd["model.layers.0.self_attn.k_proj.weight"]
    assert torch.equal(g["blk.0.attn_k.weight"][:8], k[[0, 4, 1, 5, 2, 6, 3, 7]])
    assert torch.equal(g["blk.0.attn_v.weight"], sd["model.layers.0.self_attn.v_proj.weight"])
    back = gguf_to_hf_llama(g, cfg)
    assert set(back) == set(sd) and all(torch.equal(back[n], sd[n]) for n in sd)
    with pytest.raises(ValueError, match="blk.0.attn_mystery.weight"):
        gguf_to_hf_llama({"blk.0.attn_mystery.weight": torch.zeros(2)}, cfg)


def test_tiny_llama_written_by_us_loads_in_transformers(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_hf_llama(vocab_size=64, intermediate_size=48, max_position_embeddings=64, tie_word_embeddings=False)
    cfg = model.config.to_dict()
    write_gguf(
        tmp_path / "tiny.gguf", "llama", llama_metadata_from_hf_config(cfg), hf_to_gguf_llama(model.state_dict(), cfg)
    )
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="tiny.gguf").eval()
    x = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(theirs(x).logits, model(x).logits)

    f = read_gguf(tmp_path / "tiny.gguf")
    back_cfg = hf_config_from_gguf_llama(f.metadata, set(f.tensors))
    assert back_cfg["tie_word_embeddings"] is False and back_cfg["num_key_value_heads"] == 2
    back = gguf_to_hf_llama(f.tensors, back_cfg)
    ref = model.state_dict()
    assert set(back) == set(ref) and all(torch.equal(back[n], ref[n]) for n in ref)


def test_tiny_gpt2_written_by_us_loads_in_transformers(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_hf_gpt2(0, n_positions=1024, bos_token_id=0, eos_token_id=0)
    metadata = {
        "gpt2.block_count": 2,
        "gpt2.context_length": 1024,
        "gpt2.embedding_length": 32,
        "gpt2.feed_forward_length": 128,
        "gpt2.attention.head_count": 4,
        "gpt2.attention.layer_norm_epsilon": float(torch.tensor(1e-5).item()),
        "tokenizer.ggml.tokens": [f"t{i}" for i in range(64)],
    }
    g = hf_to_gguf_gpt2(model.state_dict())
    assert g["blk.0.attn_qkv.weight"].shape == (96, 32)  # Conv1D (in, out) -> llama.cpp (out, in)
    write_gguf(tmp_path / "g.gguf", "gpt2", metadata, g)
    theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="g.gguf").eval()
    x = torch.randint(0, 64, (2, 12))
    torch.testing.assert_close(theirs(x).logits, model(x).logits)
    back = gguf_to_hf_gpt2(read_gguf(tmp_path / "g.gguf").tensors)
    ref = model.state_dict()
    assert set(back) == set(ref) and all(torch.equal(back[n], ref[n]) for n in ref)
