"""Llama-3.x RoPE scaling in GGUF: llama.cpp stores it only as the `rope_freqs.weight` tensor; read and write it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_hf_llama

from llmlab.io.gguf import read_gguf, write_gguf
from llmlab.models import load_model, save_gguf
from llmlab.models.llama.gguf import hf_to_gguf_llama, llama_metadata_from_hf_config

LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
SCALINGS = {
    # Llama 3.1's own values: one frequency of this tiny model falls between the two edges.
    "llama3.1": dict(zip(LLAMA3_KEYS, (8.0, 1.0, 4.0, 8192), strict=True)),
    # Wider edges and another original context: two frequencies in between.
    "wide": dict(zip(LLAMA3_KEYS, (16.0, 2.0, 64.0, 32768), strict=True)),
}


def llama_cpp_rope_factors(hf_config: dict) -> torch.Tensor:
    """`rope_freqs.weight` as llama.cpp's convert_hf_to_gguf.py computes it (LlamaModel.generate_extra_tensors)."""
    s = hf_config["rope_scaling"]
    dim = hf_config["hidden_size"] // hf_config["num_attention_heads"]
    freqs = 1.0 / (hf_config["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    old = s["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old / s["low_freq_factor"], old / s["high_freq_factor"]
    factors = []
    for freq in freqs.tolist():
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1.0)
        elif wavelen > low_wavelen:
            factors.append(s["factor"])
        else:
            smooth = (old / wavelen - s["low_freq_factor"]) / (s["high_freq_factor"] - s["low_freq_factor"])
            factors.append(1 / ((1 - smooth) / s["factor"] + smooth))
    return torch.tensor(factors, dtype=torch.float32)


def hf_llama3(scaling: dict):
    overrides = dict(vocab_size=64, hidden_size=64, intermediate_size=96, max_position_embeddings=256)
    rope = dict(rope_theta=500000.0, rope_scaling={"rope_type": "llama3", **scaling})
    return tiny_hf_llama(**overrides, **rope, tie_word_embeddings=False)


def hf_config_dict(hf) -> dict:
    cfg = hf.config.to_dict()
    cfg["rope_scaling"] = cfg.get("rope_scaling") or {k: v for k, v in cfg["rope_parameters"].items()}
    cfg["rope_theta"] = cfg.get("rope_theta") or cfg["rope_parameters"]["rope_theta"]
    return cfg


@pytest.mark.parametrize("name", list(SCALINGS))
def test_gguf_rope_freqs_read_as_llama3_scaling(tmp_path: Path, name: str) -> None:
    hf = hf_llama3(SCALINGS[name])
    cfg = hf_config_dict(hf)
    factors = llama_cpp_rope_factors(cfg)
    assert (factors == 1).any() and (factors == SCALINGS[name]["factor"]).any()  # all three regions present
    tensors = hf_to_gguf_llama(hf.state_dict(), cfg)
    metadata = llama_metadata_from_hf_config(cfg)  # no rope.scaling.* keys: llama.cpp writes none for llama3
    write_gguf(tmp_path / "unscaled.gguf", "llama", metadata, tensors)
    write_gguf(tmp_path / "llama3.gguf", "llama", metadata, {**tensors, "rope_freqs.weight": factors})

    ids = torch.randint(0, 64, (2, 40), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = hf(ids).logits
        ours = load_model(tmp_path / "llama3.gguf")(ids).logits
        unscaled = load_model(tmp_path / "unscaled.gguf")(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(unscaled, theirs, rtol=1e-4, atol=1e-5)  # the tensor matters


def test_llama3_model_exports_rope_freqs(tmp_path: Path) -> None:
    hf = hf_llama3(SCALINGS["llama3.1"])
    hf.save_pretrained(tmp_path / "hf")
    model = load_model(tmp_path / "hf")
    save_gguf(model, tmp_path / "m.gguf")
    f = read_gguf(tmp_path / "m.gguf")
    torch.testing.assert_close(f.tensors["rope_freqs.weight"], llama_cpp_rope_factors(hf_config_dict(hf)))
    assert not any(k.startswith("llama.rope.scaling") for k in f.metadata)
    ids = torch.randint(0, 64, (1, 30), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(load_model(f.path)(ids).logits, hf(ids).logits, rtol=1e-4, atol=1e-5)


def test_rope_freqs_that_are_not_llama3_are_refused(tmp_path: Path) -> None:
    hf = hf_llama3(SCALINGS["llama3.1"])
    cfg = hf_config_dict(hf)
    bad = torch.linspace(1.0, 3.0, 8) ** 2  # not of the llama3 form
    tensors = {**hf_to_gguf_llama(hf.state_dict(), cfg), "rope_freqs.weight": bad}
    write_gguf(tmp_path / "odd.gguf", "llama", llama_metadata_from_hf_config(cfg), tensors)
    with pytest.raises(ValueError, match="odd.gguf.*rope_freqs"):
        load_model(tmp_path / "odd.gguf")
