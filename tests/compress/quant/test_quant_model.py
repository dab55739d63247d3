"""`quantize` on tiny models (every scheme), GPTQ against round-to-nearest, and the save/load round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama

from llmlab.compress.kernels import dequantize_int4
from llmlab.compress.quant import (
    SCHEMES,
    Int4Linear,
    QuantEmbedding,
    gptq_quantize_weight,
    is_quantized_folder,
    load_quantized,
    model_bytes,
    quantize,
    save_quantized,
)
from llmlab.compress.quant.linear import quantize_int4

IDS = torch.tensor([[1, 5, 9, 2, 33, 60, 4, 7, 7, 12, 50, 3]])


def _calibration(n: int = 8, t: int = 24, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 64, (1, t), generator=g) for _ in range(n)]


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_every_scheme_swaps_layers_and_stays_close(scheme: str, family: str) -> None:
    build = tiny_llama if family == "llama" else tiny_gpt
    reference = _logits(build())
    group = None if scheme in ("int8", "dynamic-int8") else 16
    model = quantize(build(), scheme, group_size=group, calibration=_calibration())
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())  # every linear, the LM head too
    embed = model.embed_tokens
    assert isinstance(embed, QuantEmbedding) and embed.tied  # tied: one copy shared with the head
    assert model_bytes(model) < model_bytes(build()) / 2.5
    err = (_logits(model) - reference).abs().max() / reference.abs().max()
    assert err < (0.05 if "int8" in scheme else 0.25), err


def test_gptq_lowers_the_layer_output_error() -> None:
    torch.manual_seed(0)
    k, n = 128, 64
    mix = torch.randn(k, k) / k**0.5
    x = torch.randn(2048, k) @ mix + 0.1 * torch.randn(2048, k)  # correlated inputs, as in real activations
    w = torch.randn(n, k) * 0.05
    h = 2 * x.t() @ x / x.shape[0]
    for symmetric in (True, False):
        rtn = dequantize_int4(*quantize_int4(w, 32, symmetric))
        for act_order in (False, True):
            gptq = dequantize_int4(*gptq_quantize_weight(w, h, 32, symmetric, act_order=act_order))
            err_rtn = (x @ (w - rtn).t()).norm()
            err_gptq = (x @ (w - gptq).t()).norm()
            assert err_gptq < 0.8 * err_rtn, (symmetric, act_order, err_gptq, err_rtn)


def test_gptq_model_beats_round_to_nearest_on_calibration_like_data() -> None:
    calibration = _calibration(16, 24)
    reference = tiny_llama()
    held_out = torch.cat(_calibration(4, 24, seed=7))
    with torch.no_grad():
        ref = reference(held_out).logits
        rtn = quantize(tiny_llama(), "int4", group_size=16)(held_out).logits
        gptq_model = quantize(tiny_llama(), "gptq-int4", group_size=16, calibration=calibration)
        gptq = gptq_model(held_out).logits
    assert isinstance(gptq_model.layers[0].self_attn.q_proj, Int4Linear)
    assert (gptq - ref).norm() < (rtn - ref).norm()


def test_gptq_needs_calibration_and_group_sizes_must_divide() -> None:
    with pytest.raises(ValueError, match="gptq-int4 needs calibration data"):
        quantize(tiny_llama(), "gptq-int4")
    with pytest.raises(ValueError, match="unknown quantization scheme 'int3'"):
        quantize(tiny_llama(), "int3")
    model = tiny_llama()
    with pytest.raises(ValueError, match=r"group size 24 does not divide the 32 input features of model\.layers\.0"):
        quantize(model, "int4", group_size=24)
    assert isinstance(model.layers[0].self_attn.q_proj, torch.nn.Linear)  # nothing was swapped


@pytest.mark.parametrize(
    ("scheme", "symmetric"), [("int8", True), ("int4", False), ("nf4", True), ("dynamic-int8", True)]
)
def test_save_load_round_trip_gives_the_same_model(tmp_path: Path, scheme: str, symmetric: bool) -> None:
    for family, build in (("llama", tiny_llama), ("gpt", lambda: tiny_gpt(tie_embeddings=False))):
        model = quantize(build(), scheme, group_size=None if "int8" in scheme else 16, symmetric=symmetric)
        folder = tmp_path / f"{family}-{scheme}"
        save_quantized(model, folder, scheme=scheme, group_size=16, symmetric=symmetric)
        assert is_quantized_folder(folder) and not is_quantized_folder(tmp_path)
        loaded = load_quantized(folder)
        assert [(n, type(m)) for n, m in loaded.named_modules()] == [(n, type(m)) for n, m in model.named_modules()]
        assert torch.equal(_logits(loaded), _logits(model))
        if isinstance(loaded.embed_tokens, QuantEmbedding) and loaded.embed_tokens.tied:
            assert loaded.embed_tokens.scale is loaded.lm_head.scale


def test_load_quantized_refuses_an_incomplete_folder(tmp_path: Path) -> None:
    model = quantize(tiny_llama(), "int8")
    save_quantized(model, tmp_path, scheme="int8", group_size=None)
    (tmp_path / "quantization.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="not an llmlab quantization file"):
        load_quantized(tmp_path)


def test_dtype_casts_keep_the_packed_layout_and_the_sharing() -> None:
    model = quantize(tiny_llama(), "int4", group_size=16)
    before = _logits(model)
    model.to(torch.float32).to("cpu")
    layer, head, embed = model.layers[0].mlp.up_proj, model.lm_head, model.embed_tokens
    assert layer.scale.dtype == layer.zero.dtype == torch.float16 and layer.packed.dtype == torch.uint8
    assert head.scale.dtype == torch.float16 and head.qweight.dtype == torch.int8  # int4 schemes: int8 head
    assert embed.scale is head.scale and embed.qweight is head.qweight
    assert torch.equal(_logits(model), before)


@pytest.mark.parametrize("scheme", ["int8", "int4", "nf4"])
def test_dequantize_model_restores_float_layers_with_the_same_logits(scheme: str) -> None:
    from llmlab.compress.quant import dequantize_model

    model = quantize(tiny_llama(), scheme, group_size=None if scheme == "int8" else 16)
    before = _logits(model)
    dequantize_model(model)
    assert not any(
        type(m).__name__ in ("Int8Linear", "Int4Linear", "NF4Linear", "QuantEmbedding") for m in model.modules()
    )
    assert model.lm_head.weight is model.embed_tokens.weight  # still tied
    torch.testing.assert_close(_logits(model), before, rtol=1e-5, atol=1e-5)
