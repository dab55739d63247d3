"""The PEFT method registry: typed configs from `peft:` mappings, one-line errors, adapter_config.json round trips."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from peft_helpers import tiny_gpt, tiny_llama

from llmlab.peft import (
    PEFT_METHODS,
    LoraConfig,
    PeftMethod,
    build_peft_config,
    get_peft_model,
    load_adapter,
    register_peft_method,
    save_adapter,
)
from llmlab.peft.methods import config_from_adapter_json

# Non-default settings for every method (types as YAML/CLI overrides give them: ints for floats, strings for lists).
SETTINGS = {
    "lora": {"r": 4, "lora_alpha": 16, "lora_dropout": 0.1, "target_modules": ["q_proj", "v_proj"], "use_dora": True},
    "qlora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "blocksize": 32, "double_quant": False},
    "adapter": {"bottleneck_size": 8, "non_linearity": "gelu", "locations": ["mlp"]},
    "prefix": {"num_virtual_tokens": 5, "prefix_projection": True, "encoder_hidden_size": 16},
    "prompt": {"num_virtual_tokens": 3, "prompt_tuning_init": "TEXT", "init_token_ids": [5, 6]},
    "ia3": {"target_modules": ["k_proj", "down_proj"], "feedforward_modules": ["down_proj"]},
}


def test_every_method_is_registered_with_a_typed_config() -> None:
    assert list(PEFT_METHODS) == ["lora", "qlora", "adapter", "prefix", "prompt", "ia3"]
    assert set(SETTINGS) == set(PEFT_METHODS)


@pytest.mark.parametrize("method", list(SETTINGS))
def test_round_trip_mapping_to_config_to_model_to_adapter_json(method: str, tmp_path) -> None:
    values = OmegaConf.create(SETTINGS[method])  # what the fine-tuning config's `peft:` section is
    config = build_peft_config(method, values)
    assert type(config) is PEFT_METHODS[method].config_class
    for key, value in SETTINGS[method].items():
        assert getattr(config, key) == value
    assert isinstance(getattr(config, "lora_alpha", 1.0), float)  # typed: the YAML int became the declared float
    # the typed config applies, saves and reads back as the same method with the same settings
    model = get_peft_model(tiny_llama(), config)
    save_adapter(model, tmp_path / "a")
    saved = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    back = config_from_adapter_json(saved)
    read_method = "lora" if method == "qlora" else method  # QLoRA adapters are plain LoRA adapters
    assert type(back) is PEFT_METHODS[read_method].config_class
    kept = {f.name for f in dataclasses.fields(back)} - {"init_token_ids", "prompt_tuning_init"}  # init-only
    for key in set(SETTINGS[method]) & kept:
        want = SETTINGS[method][key]
        assert getattr(back, key) == (want if key != "prefix_projection" else False)  # saved in exported form


def test_cli_strings_are_converted_to_the_declared_types() -> None:
    config = build_peft_config("lora", {"r": "8", "lora_alpha": "16", "use_rslora": "true"})
    assert (config.r, config.lora_alpha, config.use_rslora) == (8, 16.0, True)


@pytest.mark.parametrize(
    ("method", "values", "message"),
    [
        ("lora", {"r": "abc"}, "peft.r: expected int, got 'abc'"),
        ("lora", {"lora_alpha": "high"}, "peft.lora_alpha: expected float, got 'high'"),
        ("lora", {"target_modules": 5}, "peft.target_modules: expected list[str] | str | None, got 5"),
        ("adapter", {"locations": "attn"}, "peft.locations: expected list[str], got 'attn'"),
        ("prompt", {"init_token_ids": ["a"]}, "peft.init_token_ids: expected list[int] | None, got ['a']"),
        ("qlora", {"double_quant": "maybe"}, "peft.double_quant: expected bool, got 'maybe'"),
        ("lora", {"r": 0}, "peft: LoRA rank r=0 must be positive"),
        ("qlora", {"compute_dtype": "int8"}, "peft: compute_dtype='int8'; choose float32, float16, bfloat16"),
        ("prefix", {"prefix_tuning_init": "TEXT"}, "peft: prefix_tuning_init='TEXT' needs init_token_ids or prefix_"),
        ("lora", {"r": "${oc.env:HOME}"}, "peft.r: interpolations such as '${oc.env:HOME}' are not allowed here"),
    ],
)
def test_bad_values_are_one_line_naming_the_key(method: str, values: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        build_peft_config(method, values)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_unknown_key_lists_the_valid_keys_and_unknown_method_the_registered_ones() -> None:
    with pytest.raises(
        ValueError, match=r"^peft.bottleneck_size: unknown setting for method lora; valid: .*lora_alpha"
    ):
        build_peft_config("lora", {"bottleneck_size": 8})
    with pytest.raises(ValueError, match=r"^unknown PEFT method 'dora'; registered: lora, qlora, adapter, prefix"):
        build_peft_config("dora", {})


def test_adapter_json_errors_name_the_key() -> None:
    with pytest.raises(ValueError, match="^r: expected int, got 'x'"):
        config_from_adapter_json({"peft_type": "LORA", "r": "x"})
    with pytest.raises(ValueError, match="peft_type='LOHA'; supported: BOTTLENECK, IA3, LORA, PREFIX_TUNING"):
        config_from_adapter_json({"peft_type": "LOHA"})
    # keys peft writes that llmlab does not have are ignored; a missing task_type is CAUSAL_LM
    assert config_from_adapter_json({"peft_type": "LORA", "r": 2, "rank_pattern": {}, "task_type": None}).r == 2


def test_a_registered_method_is_applied_by_get_peft_model() -> None:
    @dataclasses.dataclass
    class HeadOnlyConfig(LoraConfig):  # a toy method: train only the output layer
        peft_type = "HEAD_ONLY"

    def apply(model: torch.nn.Module, config: HeadOnlyConfig) -> None:
        model.lm_head.requires_grad_(True)

    register_peft_method(PeftMethod("head-only", HeadOnlyConfig, apply))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_peft_method(PeftMethod("head-only", HeadOnlyConfig, apply))
        model = get_peft_model(tiny_gpt(), build_peft_config("head-only", {"r": 2}))
        assert [n for n, p in model.named_parameters() if p.requires_grad] == ["transformer.wte.weight"]  # tied
    finally:
        del PEFT_METHODS["head-only"]


def test_interpolations_in_a_dictconfig_are_refused_not_resolved() -> None:
    with pytest.raises(ValueError, match=r"^peft.target_modules: interpolations such as '\$\{oc.env:HOME\}'"):
        build_peft_config("lora", OmegaConf.create({"target_modules": "${oc.env:HOME}"}))


def test_a_text_initialised_prompt_adapter_loads_back(tmp_path) -> None:
    config = build_peft_config("prompt", SETTINGS["prompt"] | {"prompt_tuning_init_text": "hi there"})
    model = get_peft_model(tiny_llama(), config)
    save_adapter(model, tmp_path / "a")
    loaded = load_adapter(tiny_llama(seed=0), tmp_path / "a")
    x = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_the_shipped_finetune_configs_build_typed_peft_configs() -> None:
    configs = sorted(Path(__file__).parents[2].glob("configs/finetune/*.yaml"))
    built = []
    for path in configs:
        yaml = OmegaConf.load(path)
        if yaml.get("method") in PEFT_METHODS:
            config = build_peft_config(yaml.method, yaml.get("peft", {}))
            assert isinstance(config, PEFT_METHODS[yaml.method].config_class)
            built.append(yaml.method)
    assert {"lora", "qlora"} <= set(built)
    qlora = build_peft_config("qlora", OmegaConf.load(configs[0].with_name("smollm2-qlora.yaml")).peft)
    assert (qlora.r, qlora.target_modules, qlora.double_quant) == (16, "all-linear", True)


@pytest.mark.parametrize("method", ["prefix", "prompt"])
def test_a_text_init_is_checked_before_the_tokenizer_and_tokenized_before_applying(method: str) -> None:
    config = build_peft_config(method, {f"{method}_tuning_init": "TEXT", f"{method}_tuning_init_text": "ab"})
    with pytest.raises(ValueError, match=f"{method}_tuning_init='TEXT' needs init_token_ids; tokenize the text"):
        get_peft_model(tiny_llama(), config)
    config.tokenize_init_text(lambda text: [ord(ch) % 50 for ch in text])
    assert config.init_token_ids == [ord("a") % 50, ord("b") % 50]
    assert config.reserved_positions() == config.num_virtual_tokens
    get_peft_model(tiny_llama(), config)
