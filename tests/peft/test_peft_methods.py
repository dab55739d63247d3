"""LoRA / rsLoRA / DoRA / IA3 / bottleneck adapters on GPT, Llama-like GPT and Llama: init, grads, switch, merge."""

from __future__ import annotations

import math

import pytest
import torch
from peft_helpers import tiny_gpt, tiny_llama, train_steps

from llmlab.peft import (
    AdapterConfig,
    IA3Config,
    LoraConfig,
    adapter_params,
    adapters_disabled,
    count_parameters,
    disable_adapters,
    enable_adapters,
    freeze_except,
    get_peft_model,
    merge_adapters,
    merge_and_unload,
    print_trainable_parameters,
    train_last_n_layers,
    trainable_parameters,
    unmerge_adapters,
)
from llmlab.peft.ia3 import IA3Linear
from llmlab.peft.lora import LoRALinear

CONFIGS = {
    "lora": lambda: LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"),
    "rslora": lambda: LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_rslora=True),
    "dora": lambda: LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", use_dora=True),
    "ia3": lambda: IA3Config(),
    "adapter": lambda: AdapterConfig(bottleneck_size=8),
}


def _logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).logits


@pytest.mark.parametrize("method", list(CONFIGS))
def test_output_equals_base_at_init_and_only_adapters_get_grads(make_model, batch, method: str) -> None:
    x, y = batch
    model = make_model()
    base_logits = _logits(model, x)
    base_names = {n for n, _ in model.named_parameters()}
    get_peft_model(model, CONFIGS[method]())
    torch.testing.assert_close(_logits(model, x), base_logits, rtol=0, atol=1e-5)
    # base parameter names survive (base checkpoints still load), and they are all frozen
    names = {n for n, _ in model.named_parameters()}
    assert base_names <= names
    assert all(not p.requires_grad for n, p in model.named_parameters() if n in base_names)
    model(x, y).loss.backward()
    for n, p in model.named_parameters():
        if n in base_names:
            assert p.grad is None, n
    trainable = dict(trainable_parameters(model))
    assert trainable and set(trainable) == set(adapter_params(model))
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable.values())


@pytest.mark.parametrize("method", list(CONFIGS))
def test_each_method_reduces_the_loss(batch, method: str) -> None:
    x, y = batch
    model = get_peft_model(tiny_llama(), CONFIGS[method]())
    # IA3 only rescales activations of a random tiny model (near-uniform logits): it needs a larger step.
    losses = train_steps(model, x, y, steps=6, lr=0.3 if method == "ia3" else 2e-2)
    assert losses[-1] < losses[0] - 0.05, losses


@pytest.mark.parametrize("method", ["lora", "dora", "ia3", "adapter"])
def test_disabling_gives_the_base_model_back(make_model, batch, method: str) -> None:
    x, y = batch
    model = make_model()
    base_logits = _logits(model, x)
    get_peft_model(model, CONFIGS[method]())
    train_steps(model, x, y, steps=3)
    tuned = _logits(model, x)
    assert not torch.allclose(tuned, base_logits, atol=1e-4)
    with adapters_disabled(model):
        torch.testing.assert_close(_logits(model, x), base_logits, rtol=0, atol=1e-6)
    torch.testing.assert_close(_logits(model, x), tuned)
    disable_adapters(model)
    torch.testing.assert_close(_logits(model, x), base_logits, rtol=0, atol=1e-6)
    enable_adapters(model)
    torch.testing.assert_close(_logits(model, x), tuned)


@pytest.mark.parametrize("method", ["lora", "rslora", "dora", "ia3"])
def test_merge_equals_unmerged_and_unmerge_restores(make_model, batch, method: str) -> None:
    x, y = batch
    model = make_model()
    base_state = {k: v.clone() for k, v in model.state_dict().items()}
    get_peft_model(model, CONFIGS[method]())
    train_steps(model, x, y, steps=4)
    unmerged = _logits(model, x)
    merge_adapters(model)
    assert all(m.merged for m in model.modules() if isinstance(m, (LoRALinear, IA3Linear)))
    changed = [k for k, v in base_state.items() if not torch.equal(model.state_dict()[k], v)]
    assert changed, "merging should change base weights"
    torch.testing.assert_close(_logits(model, x), unmerged, rtol=1e-4, atol=1e-4)
    unmerge_adapters(model)
    for k, v in base_state.items():
        torch.testing.assert_close(model.state_dict()[k], v, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_logits(model, x), unmerged, rtol=1e-4, atol=1e-4)


def test_merge_and_unload_gives_a_plain_model(batch) -> None:
    x, y = batch
    model = get_peft_model(tiny_gpt(), LoraConfig(r=4, target_modules=["c_attn", "c_fc"]))
    train_steps(model, x, y, steps=3)
    tuned = _logits(model, x)
    model = merge_and_unload(model)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    assert set(model.state_dict()) == set(tiny_gpt().state_dict())
    torch.testing.assert_close(_logits(model, x), tuned, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="no adapters"):
        merge_adapters(model)


def test_lora_math_scaling_and_zero_init() -> None:
    lin = torch.nn.Linear(16, 8)
    layer = LoRALinear(lin, r=4, scaling=2.0)
    assert torch.count_nonzero(layer.lora_B.weight) == 0 and torch.count_nonzero(layer.lora_A.weight) > 0
    torch.nn.init.normal_(layer.lora_B.weight)
    x = torch.randn(3, 16)
    expected = lin(x) + 2.0 * x @ layer.lora_A.weight.T @ layer.lora_B.weight.T
    torch.testing.assert_close(layer(x), expected)
    assert layer.weight is lin.weight  # the very same Parameter: names and ties are kept
    assert LoraConfig(r=16, lora_alpha=8).scaling == 0.5
    assert LoraConfig(r=16, lora_alpha=8, use_rslora=True).scaling == pytest.approx(8 / math.sqrt(16))


def test_dora_magnitude_and_direction() -> None:
    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    layer = LoRALinear(lin, r=4, scaling=1.0, use_dora=True)
    torch.testing.assert_close(layer.lora_magnitude_vector.data, lin.weight.norm(dim=1))
    torch.nn.init.normal_(layer.lora_B.weight, std=0.1)
    with torch.no_grad():
        layer.lora_magnitude_vector.mul_(1.5)
    w = lin.weight + layer.lora_B.weight @ layer.lora_A.weight  # W + s B A
    w_dora = layer.lora_magnitude_vector[:, None] * w / w.norm(dim=1, keepdim=True)  # m * V / ||V||
    x = torch.randn(3, 16)
    torch.testing.assert_close(layer(x), x @ w_dora.T + lin.bias, rtol=1e-5, atol=1e-5)


def test_ia3_scales_outputs_and_feedforward_inputs() -> None:
    model = get_peft_model(tiny_llama(), IA3Config())
    layer0 = model.model.layers[0]
    assert isinstance(layer0.self_attn.k_proj, IA3Linear) and not layer0.self_attn.k_proj.feedforward
    assert layer0.mlp.down_proj.feedforward and layer0.mlp.down_proj.ia3_l.shape == (1, 64)
    assert layer0.self_attn.v_proj.ia3_l.shape == (16, 1)
    assert not isinstance(layer0.self_attn.q_proj, IA3Linear)
    gpt = get_peft_model(tiny_gpt(), IA3Config())
    assert gpt.transformer.h[0].attn.c_attn.ia3_l.shape == (96, 1)  # fused qkv: the whole output (as peft)
    assert gpt.transformer.h[0].mlp.c_proj.feedforward


def test_adapter_wraps_attention_and_mlp_outputs() -> None:
    model = get_peft_model(tiny_llama(), AdapterConfig(bottleneck_size=4))
    names = [n for n, m in model.named_modules() if hasattr(m, "adapter_down")]
    assert names == [
        "model.layers.0.self_attn.o_proj",
        "model.layers.0.mlp.down_proj",
        "model.layers.1.self_attn.o_proj",
        "model.layers.1.mlp.down_proj",
    ]
    gpt = get_peft_model(tiny_gpt(), AdapterConfig(bottleneck_size=4, locations=["mlp"]))
    assert [n for n, m in gpt.named_modules() if hasattr(m, "adapter_up")] == [
        "transformer.h.0.mlp.c_proj",
        "transformer.h.1.mlp.c_proj",
    ]


def test_target_modules_suffix_regex_and_errors() -> None:
    model = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["q_proj", "mlp.up_proj"]))
    lora = sorted(n for n, m in model.named_modules() if isinstance(m, LoRALinear))
    assert lora == [f"model.layers.{i}.{s}" for i in (0, 1) for s in ("mlp.up_proj", "self_attn.q_proj")]
    model = get_peft_model(tiny_gpt(), LoraConfig(r=2, target_modules=r"transformer\.h\.1\.attn\.c_(attn|proj)"))
    lora = sorted(n for n, m in model.named_modules() if isinstance(m, LoRALinear))
    assert lora == ["transformer.h.1.attn.c_attn", "transformer.h.1.attn.c_proj"]
    with pytest.raises(ValueError, match="'q_proj' matches no module.*transformer.h.0.attn.c_attn"):
        get_peft_model(tiny_gpt(), LoraConfig(target_modules=["c_attn", "q_proj"]))
    with pytest.raises(ValueError, match="not a Linear"):
        get_peft_model(tiny_gpt(), LoraConfig(target_modules=["attn"]))
    with pytest.raises(ValueError, match="already has adapters"):
        get_peft_model(get_peft_model(tiny_gpt(), LoraConfig()), LoraConfig())
    with pytest.raises(ValueError, match="rank"):
        get_peft_model(tiny_gpt(), LoraConfig(r=0))


def test_print_trainable_parameters_format(capsys: pytest.CaptureFixture[str]) -> None:
    model = get_peft_model(tiny_gpt(), LoraConfig(r=4, target_modules=["c_attn"]))
    print_trainable_parameters(model)
    trainable, total = count_parameters(model)
    assert trainable == 2 * (4 * 32 + 96 * 4)  # two layers of A (4, 32) + B (96, 4)
    assert total == tiny_gpt().num_parameters() + trainable
    expected = (
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}\n"
    )
    assert capsys.readouterr().out == expected
    assert expected.startswith("trainable params: 1,024 || all params: ")


def test_modules_to_save_and_bias_options(batch) -> None:
    model = get_peft_model(tiny_gpt(), LoraConfig(r=2, target_modules=["c_attn"], modules_to_save=["ln_f"], bias="all"))
    names = {n for n, _ in trainable_parameters(model)}
    assert {"transformer.ln_f.weight", "transformer.ln_f.bias", "transformer.h.0.mlp.c_fc.bias"} <= names
    assert "transformer.h.0.mlp.c_fc.weight" not in names


def test_freeze_except_and_train_last_n_layers(batch) -> None:
    x, y = batch
    model = tiny_llama()
    names = train_last_n_layers(model, 1)
    assert names and all(n.startswith(("model.layers.1.", "model.norm", "lm_head")) for n in names)
    model(x, y).loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is None
    assert model.model.layers[1].self_attn.q_proj.weight.grad is not None
    gpt = tiny_gpt()
    kept = freeze_except(gpt, ["ln_f", "transformer.h.1.mlp"])
    assert set(kept) == {n for n, p in gpt.named_parameters() if p.requires_grad}
    assert "transformer.ln_f.weight" in kept and "transformer.h.1.mlp.c_fc.weight" in kept
    assert "transformer.h.0.mlp.c_fc.weight" not in kept
    with pytest.raises(ValueError, match="'nope' matches no parameter"):
        freeze_except(gpt, ["nope"])
    with pytest.raises(ValueError, match="between 0 and"):
        train_last_n_layers(gpt, 5)
    # tied embeddings: training the output layer trains the (shared) input embedding too
    assert train_last_n_layers(gpt, 0) == ["transformer.wte.weight", "transformer.ln_f.weight", "transformer.ln_f.bias"]
