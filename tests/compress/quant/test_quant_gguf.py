"""GGUF Q8_0 / Q4_0 / Q4_1 loaded straight into Int8Linear / Int4Linear: the same logits as the dequantised load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import tiny_llama

import llmlab.io.gguf
from llmlab.compress.quant import Int4Linear, Int8Linear, QuantEmbedding, load_gguf_quantized, model_bytes
from llmlab.hub import load_for_inference
from llmlab.io.gguf import read_gguf
from llmlab.models import load_gguf_model, save_gguf

IDS = torch.tensor([[1, 5, 9, 2, 33, 60, 4, 7, 7, 12, 50, 3]])


def _logits(model: torch.nn.Module, ids: torch.Tensor = IDS) -> torch.Tensor:
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("qtype", ["Q8_0", "Q4_0", "Q4_1"])
def test_tiny_gguf_loads_quantized_with_the_dequantised_logits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, qtype: str, tied: bool
) -> None:
    # llmlab writes Q8_0 itself; Q4_0/Q4_1 through the same writer with gguf.quants' quantizers.
    monkeypatch.setattr(llmlab.io.gguf, "WRITE_DTYPES", (*llmlab.io.gguf.WRITE_DTYPES, "Q4_0", "Q4_1"))
    path = tmp_path / f"tiny-{qtype}.gguf"
    save_gguf(tiny_llama(3, tie_word_embeddings=tied, hidden_size=64, intermediate_size=128), path, qtype)
    model = load_gguf_quantized(path)
    expected_class = Int8Linear if qtype == "Q8_0" else Int4Linear
    q = model.layers[0].self_attn.q_proj
    assert type(q) is expected_class and q.group_size == 32
    assert type(model.lm_head) is expected_class and isinstance(model.embed_tokens, QuantEmbedding)
    assert model.embed_tokens.tied == tied
    reference = load_gguf_model(path)
    torch.testing.assert_close(_logits(model), _logits(reference), rtol=1e-5, atol=1e-5)
    f = read_gguf(path)
    stored = sum(f.raw_blocks(n).numel() for n, t in f.tensor_types.items() if t == qtype)
    assert model_bytes(model) < 1.2 * stored + 64 * 1024  # the blocks' bytes (+ norms), no float copy
    hub = load_for_inference(path, quantized=True, require_tokenizer=False).model
    assert type(hub.lm_head) is expected_class and torch.equal(_logits(hub), _logits(model))


def test_raw_blocks_refuses_float_tensors(tmp_path: Path) -> None:
    path = tmp_path / "f32.gguf"
    save_gguf(tiny_llama(), path, "F32")
    with pytest.raises(ValueError, match="raw blocks exist for Q8_0, Q4_0, Q4_1"):
        read_gguf(path).raw_blocks("blk.0.attn_q.weight")


@pytest.mark.slow
def test_smollm2_q4_1_loads_quantized_with_the_dequantised_logits(smollm2_file, smollm2) -> None:
    reference, tokenizer = smollm2
    model = load_gguf_quantized(smollm2_file)
    assert isinstance(model.layers[0].mlp.down_proj, Int4Linear) and isinstance(model.lm_head, Int8Linear)
    assert model_bytes(model) <= 1.2 * smollm2_file.path.stat().st_size
    ids = torch.tensor([tokenizer.encode("The quick brown fox jumps over the lazy dog.")])
    torch.testing.assert_close(_logits(model, ids), _logits(reference, ids), rtol=1e-4, atol=1e-4)
