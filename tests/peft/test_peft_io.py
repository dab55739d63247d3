"""Saving/loading adapters in the HF PEFT format, and interoperability with the `peft` library itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from peft_helpers import VOCAB, sharpen, tiny_gpt, tiny_llama, train_steps
from safetensors.torch import load_file

from llmlab.peft import (
    AdapterConfig,
    IA3Config,
    LoraConfig,
    PrefixConfig,
    PromptConfig,
    QLoraConfig,
    get_peft_model,
    load_adapter,
    save_adapter,
)

METHODS = {
    "lora": lambda: LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", modules_to_save=["lm_head"]),
    "dora": lambda: LoraConfig(r=4, target_modules=r".*\.(q_proj|v_proj|c_attn)", use_dora=True),
    "ia3": lambda: IA3Config(),
    "adapter": lambda: AdapterConfig(bottleneck_size=4),
    "prefix": lambda: PrefixConfig(num_virtual_tokens=3, prefix_projection=True, encoder_hidden_size=8),
    "prompt": lambda: PromptConfig(num_virtual_tokens=3),
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("family", [tiny_gpt, tiny_llama], ids=["gpt", "llama"])
def test_save_load_round_trip(tmp_path: Path, batch, family, method: str) -> None:
    x, y = batch
    model = get_peft_model(family(), METHODS[method]())
    train_steps(model, x, y, steps=2)
    with torch.no_grad():
        tuned = model(x).logits
    save_adapter(model, tmp_path / "adapter", base_model_name_or_path="tiny-base")
    save_adapter(model, tmp_path / "adapter")  # overwriting an existing adapter folder works
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter"]  # no temp leftovers
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["peft_type"] == METHODS[method]().peft_type and cfg["task_type"] == "CAUSAL_LM"
    loaded = load_adapter(family(), tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, tuned, rtol=1e-5, atol=1e-5)


def test_lora_keys_follow_peft_names(tmp_path: Path) -> None:
    model = get_peft_model(tiny_llama(), LoraConfig(r=4, target_modules=["q_proj"], use_dora=True))
    save_adapter(model, tmp_path, base_model_name_or_path="HuggingFaceTB/SmolLM2-135M")
    keys = sorted(load_file(tmp_path / "adapter_model.safetensors"))
    assert keys[:3] == [
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight",
        "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector",
    ]
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["lora_alpha"] == 8 and cfg["target_modules"] == ["q_proj"] and cfg["use_dora"]
    assert cfg["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M"


def test_loading_onto_another_base_is_a_clear_error(tmp_path: Path) -> None:
    save_adapter(get_peft_model(tiny_llama(), LoraConfig(r=4)), tmp_path / "a")
    with pytest.raises(ValueError, match="another base model: config hidden_size=32 there, 48 here"):
        load_adapter(tiny_llama(hidden_size=48), tmp_path / "a")
    with pytest.raises(ValueError, match="made for a Llama model, not a GPT"):
        load_adapter(tiny_gpt(), tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="adapter_config.json not found"):
        load_adapter(tiny_llama(), tmp_path / "missing")
    (tmp_path / "a" / "adapter_model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt"):
        load_adapter(tiny_llama(), tmp_path / "a")


def test_qlora_adapter_is_a_plain_lora_adapter(tmp_path: Path, batch) -> None:
    x, y = batch
    cfg = QLoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    model = get_peft_model(tiny_llama(), cfg)
    train_steps(model, x, y, steps=2)
    with torch.no_grad():
        tuned = model(x).logits
    save_adapter(model, tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["peft_type"] == "LORA" and "blocksize" not in saved
    again = load_adapter(tiny_llama(), tmp_path, config=cfg)  # onto a fresh 4-bit base
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, tuned, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ peft interop
def _hf_llama(model, tmp_path: Path):
    from transformers import LlamaForCausalLM

    from llmlab.models.llama import save_hf_llama

    save_hf_llama(model, tmp_path / "hf-base")
    return LlamaForCausalLM.from_pretrained(tmp_path / "hf-base").eval()


def _hf_gpt2(model):
    """The HF GPT-2 twin of a llmlab GPT (mapped by hand: HF's Conv1D weights are our Linear weights transposed)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
    hf = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer, n_head=c.n_head
        )
    )
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    sd = {k: (v.t() if k.endswith(conv1d) else v) for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"lm_head.weight"}
    return hf.eval()


def test_llmlab_lora_and_ia3_load_with_peft_onto_the_hf_export(tmp_path: Path, batch) -> None:
    from peft import PeftModel

    x, y = batch
    for family, hf_of, cfg in (
        (tiny_llama, lambda m: _hf_llama(m, tmp_path), LoraConfig(r=4, target_modules="all-linear", use_dora=True)),
        (tiny_gpt, _hf_gpt2, LoraConfig(r=4, lora_alpha=16, target_modules=["c_attn", "mlp.c_fc"])),
        (tiny_llama, lambda m: _hf_llama(m, tmp_path), IA3Config()),
        (tiny_gpt, _hf_gpt2, IA3Config()),
    ):
        base = family()
        hf = hf_of(base)
        with torch.no_grad():
            torch.testing.assert_close(hf(x).logits, base(x).logits, rtol=1e-4, atol=1e-5)
        model = get_peft_model(base, cfg)
        train_steps(model, x, y, steps=3)
        save_adapter(model, tmp_path / "ours")
        peft_model = PeftModel.from_pretrained(hf, tmp_path / "ours").eval()
        with torch.no_grad():
            torch.testing.assert_close(peft_model(x).logits, model(x).logits, rtol=1e-4, atol=1e-5)


def test_peft_made_adapters_load_into_llmlab(tmp_path: Path, batch) -> None:
    from peft import IA3Config as HFIA3Config
    from peft import LoraConfig as HFLoraConfig
    from peft import get_peft_model as hf_get_peft_model

    x, _ = batch
    cases = [
        (
            tiny_llama,
            lambda m: _hf_llama(m, tmp_path),
            HFLoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"], init_lora_weights=False),
        ),  # noqa: E501
        (tiny_llama, lambda m: _hf_llama(m, tmp_path), HFIA3Config(task_type="CAUSAL_LM", init_ia3_weights=False)),
        (tiny_gpt, _hf_gpt2, HFLoraConfig(r=4, target_modules=["c_attn"], use_rslora=True, init_lora_weights=False)),
        (tiny_gpt, _hf_gpt2, HFIA3Config(task_type="CAUSAL_LM", init_ia3_weights=False)),
    ]
    for family, hf_of, hf_cfg in cases:
        hf_peft = hf_get_peft_model(hf_of(family()), hf_cfg).eval()
        with torch.no_grad():
            expected = hf_peft(x).logits
            assert not torch.allclose(expected, family()(x).logits, atol=1e-4)  # the adapter does something
        hf_peft.save_pretrained(tmp_path / "theirs")
        ours = load_adapter(family(), tmp_path / "theirs")
        with torch.no_grad():
            torch.testing.assert_close(ours(x).logits, expected, rtol=1e-4, atol=1e-5)


def test_prompt_tuning_matches_peft(tmp_path: Path, batch) -> None:
    """peft prepends the same soft prompt to the input embeddings; its logits include the prompt positions."""
    from peft import PeftModel

    x, y = batch
    model = get_peft_model(sharpen(tiny_llama()), PromptConfig(num_virtual_tokens=3))
    train_steps(model, x, y, steps=2)
    save_adapter(model, tmp_path / "prompt")
    hf = _hf_llama(sharpen(tiny_llama()), tmp_path)
    peft_model = PeftModel.from_pretrained(hf, tmp_path / "prompt").eval()
    with torch.no_grad():
        torch.testing.assert_close(peft_model(input_ids=x).logits[:, 3:], model(x).logits, rtol=1e-4, atol=1e-5)
    assert model(x).logits.shape == (2, 12, VOCAB)


def test_prefix_tuning_matches_peft_both_ways(tmp_path: Path, batch) -> None:
    """peft passes the prefixes as a P-token past_key_values, so the real tokens sit at positions P, P+1, ...;
    llmlab shifts positions the same way, and prefix adapters give equal logits in both directions."""
    from peft import PeftModel
    from peft import PrefixTuningConfig as HFPrefixConfig
    from peft import get_peft_model as hf_get_peft_model

    x, y = batch
    for family, hf_of in ((tiny_llama, lambda m: _hf_llama(m, tmp_path)), (tiny_gpt, _hf_gpt2)):
        model = get_peft_model(family(), PrefixConfig(num_virtual_tokens=3, prefix_projection=True))
        train_steps(model, x, y, steps=2)
        save_adapter(model, tmp_path / "ours")
        peft_model = PeftModel.from_pretrained(hf_of(family()), tmp_path / "ours").eval()
        with torch.no_grad():
            torch.testing.assert_close(peft_model(input_ids=x).logits, model(x).logits, rtol=1e-4, atol=1e-5)

        hf_peft = hf_get_peft_model(hf_of(family()), HFPrefixConfig(task_type="CAUSAL_LM", num_virtual_tokens=4))
        hf_peft.eval().save_pretrained(tmp_path / "theirs")
        ours = load_adapter(family(), tmp_path / "theirs")
        with torch.no_grad():
            torch.testing.assert_close(ours(x).logits, hf_peft(input_ids=x).logits, rtol=1e-4, atol=1e-5)


def test_print_trainable_parameters_matches_peft(capsys: pytest.CaptureFixture[str]) -> None:
    from peft import LoraConfig as HFLoraConfig
    from peft import get_peft_model as hf_get_peft_model

    from llmlab.peft import print_trainable_parameters

    base = tiny_gpt()
    hf_peft = hf_get_peft_model(_hf_gpt2(base), HFLoraConfig(r=4, target_modules=["c_attn", "c_fc"]))
    hf_peft.print_trainable_parameters()
    theirs = capsys.readouterr().out
    print_trainable_parameters(get_peft_model(base, LoraConfig(r=4, target_modules=["c_attn", "c_fc"])))
    assert capsys.readouterr().out == theirs
    assert theirs.startswith("trainable params: 2,304 || all params: 30,848 || trainable%: 7.4689")


def test_adapter_loads_on_its_base_after_a_round_trip_through_hf(tmp_path: Path) -> None:
    """The fingerprint compares the resolved architecture: `llama-tiny` leaves head_dim unset (None), the HF reader
    fills in the resolved value, and the adapter must still load (issue 8 defect), with the same logits."""
    from llmlab.models import load_model, save_hf
    from llmlab.models.llama import Llama

    torch.manual_seed(0)
    base = Llama.from_preset("llama-tiny")
    assert base.config.head_dim is None
    tuned = get_peft_model(base, LoraConfig(r=4))
    for p in tuned.parameters():
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.02)  # a non-zero adapter, so the logits show it is applied
    save_adapter(tuned, tmp_path / "adapter")
    x = torch.randint(0, base.config.vocab_size, (1, 7))
    with torch.no_grad():
        want = tuned(x).logits

    torch.manual_seed(0)
    save_hf(Llama.from_preset("llama-tiny"), tmp_path / "hf")
    reloaded = load_model(tmp_path / "hf")
    assert reloaded.config.head_dim is not None  # resolved by the HF reader
    load_adapter(reloaded, tmp_path / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).logits, want)
