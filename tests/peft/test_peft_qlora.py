"""QLoRA: NF4 quantization (checked against bitsandbytes) and LoRA training on a frozen 4-bit base."""

from __future__ import annotations

import bitsandbytes.functional as bnbf
import pytest
import torch
from peft_helpers import tiny_gpt, tiny_llama, train_steps

from llmlab.peft import LoraConfig, QLoraConfig, base_weight_bytes, get_peft_model, merge_and_unload
from llmlab.peft.qlora import NF4_CODE, QLoRALinear, dequantize_nf4, quantize_nf4


def test_nf4_packing_matches_bitsandbytes() -> None:
    torch.manual_seed(0)
    w = torch.randn(96, 32)
    packed, absmax = quantize_nf4(w, blocksize=64)
    ref_packed, state = bnbf.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=False)
    assert torch.equal(packed, ref_packed.flatten())
    torch.testing.assert_close(absmax, state.absmax)
    assert torch.equal(torch.tensor(NF4_CODE), state.code)


def test_nf4_dequantize_is_the_nearest_level() -> None:
    torch.manual_seed(0)
    w = torch.randn(64, 48)
    packed, absmax = quantize_nf4(w, blocksize=64)
    deq = dequantize_nf4(packed, absmax, w.shape, 64)
    blocks, scale = w.view(-1, 64), absmax[:, None]
    code = torch.tensor(NF4_CODE)
    nearest = code[((blocks / scale)[..., None] - code).abs().argmin(-1)] * scale  # brute force
    torch.testing.assert_close(deq, nearest.view(w.shape))
    assert (deq - w).abs().mean() < 0.1 * w.abs().mean()


def test_qlora_output_equals_quantized_base_at_init_and_trains(batch) -> None:
    x, y = batch
    model = get_peft_model(tiny_llama(), QLoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, QLoRALinear) and "weight" not in dict(layer.named_parameters())
    assert layer.weight_nf4.dtype == torch.uint8
    with torch.no_grad():
        lora_out = model(x).logits
        for m in model.modules():
            if isinstance(m, QLoRALinear):
                m.disabled = True
        base_out = model(x).logits  # the 4-bit base alone
        for m in model.modules():
            if isinstance(m, QLoRALinear):
                m.disabled = False
    torch.testing.assert_close(lora_out, base_out, rtol=0, atol=1e-6)
    losses = train_steps(model, x, y, steps=6, lr=2e-2)
    assert losses[-1] < losses[0] - 0.05, losses
    assert all(b.grad is None for b in model.buffers())
    # the quantized model stays close to the full-precision one
    full = tiny_llama()
    with torch.no_grad():
        assert (full(x).logits - base_out).abs().max() < 0.05


@pytest.mark.parametrize("double_quant", [False, True])
def test_qlora_base_uses_less_memory_than_lora(double_quant: bool) -> None:
    cfg = dict(r=4, target_modules="all-linear")
    lora = get_peft_model(tiny_gpt(n_embd=64), LoraConfig(**cfg))
    qlora = get_peft_model(tiny_gpt(n_embd=64), QLoraConfig(**cfg, double_quant=double_quant))
    lora_bytes, qlora_bytes = base_weight_bytes(lora), base_weight_bytes(qlora)
    n = sum(m.in_features * m.out_features for m in qlora.modules() if isinstance(m, QLoRALinear))
    assert lora_bytes == 4 * n  # fp32
    bits = 4 + (32 / 64 if not double_quant else 8 / 64)  # 4-bit codes + absmax (fp32 or int8) per block of 64
    assert qlora_bytes == pytest.approx(n * bits / 8, rel=0.02)
    assert qlora_bytes < lora_bytes / 7


def test_qlora_merge_and_unload_dequantizes(batch) -> None:
    x, y = batch
    model = get_peft_model(tiny_gpt(), QLoraConfig(r=4, target_modules=["c_attn", "c_fc"], use_dora=True))
    train_steps(model, x, y, steps=3)
    with torch.no_grad():
        tuned = model(x).logits
    with pytest.raises(ValueError, match="4-bit"):
        model.transformer.h[0].attn.c_attn.merge()
    plain = merge_and_unload(model)
    assert not any(isinstance(m, QLoRALinear) for m in plain.modules())
    with torch.no_grad():
        torch.testing.assert_close(plain(x).logits, tuned, rtol=1e-4, atol=1e-4)
