"""The model-family registry, the shared preset registry, resolved configs and special token ids in HF exports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama

from llmlab.models import FAMILIES, load_model, model_family, save_hf, save_llmlab
from llmlab.models.formats.hf import read_hf_config
from llmlab.models.gpt import PRESETS as GPT_PRESETS
from llmlab.models.llama import PRESETS as LLAMA_PRESETS
from llmlab.models.llama import config_from_hf, config_to_hf
from llmlab.models.registry import ModelFamily, family_of, get_family, hf_family, register_family


def test_families_register_themselves() -> None:
    assert {"gpt", "llama"} <= set(FAMILIES)
    assert model_family(tiny_gpt()) == "gpt" and model_family(tiny_llama()) == "llama"
    assert hf_family({"architectures": ["LlamaForCausalLM"]}).name == "llama"
    assert hf_family({"model_type": "gpt2"}).name == "gpt"
    with pytest.raises(ValueError, match="'BertModel'.*supported: llmlab families .*gpt, llama"):
        hf_family({"architectures": ["BertModel"]})
    with pytest.raises(ValueError, match="not an llmlab model"):
        family_of(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="no model family 'bert'"):
        get_family("bert")


def test_a_new_family_is_a_few_lines(tmp_path: Path) -> None:
    """Registering a family makes the format-level API load and save it, without touching that API."""

    class TinyGPT(type(tiny_gpt())):  # a "new" family reusing GPT's code, config and presets
        family_name = "tinygpt-test"

    register_family(ModelFamily.of(TinyGPT))
    try:
        model = TinyGPT(GPT_PRESETS.get("nano-char"))
        assert model_family(model) == "tinygpt-test"
        save_llmlab(model, tmp_path / "own")
        assert type(load_model(tmp_path / "own")) is TinyGPT  # load_model dispatches on the "family" key
        with pytest.raises(ValueError, match="tinygpt-test family has no Hugging Face form"):
            save_hf(model, tmp_path / "hf")
    finally:
        del FAMILIES["tinygpt-test"]


def test_preset_overrides_are_structural_and_checked() -> None:
    cfg = LLAMA_PRESETS.get("llama-tiny", num_hidden_layers=3, rope_scaling={"rope_type": "linear", "factor": 2.0})
    assert cfg.num_hidden_layers == 3 and cfg.rope_type == "linear"
    assert LLAMA_PRESETS.get("llama-tiny").num_hidden_layers == 2  # the preset itself is untouched
    assert GPT_PRESETS.get("nano-char", dropout=0).dropout == 0  # an int where a float is expected is fine
    with pytest.raises(ValueError, match="unknown LlamaConfig field 'hidden'"):
        LLAMA_PRESETS.get("llama-tiny", hidden=3)
    with pytest.raises(ValueError, match="GPTConfig.n_layer must be int, got 'abc'"):
        GPT_PRESETS.get("nano-char", n_layer="abc")
    with pytest.raises(ValueError, match="GPTConfig.bias must be bool"):
        GPT_PRESETS.get("nano-char", bias=1)
    with pytest.raises(ValueError, match="n_head"):  # overrides are validated together
        GPT_PRESETS.get("nano-char", n_head=3)


def test_smollm2_presets_share_their_base() -> None:
    small, large = LLAMA_PRESETS.get("smollm2-135m"), LLAMA_PRESETS.get("smollm2-360m")
    assert (small.num_hidden_layers, small.num_attention_heads, small.kv_heads) == (30, 9, 3)
    assert (large.hidden_size, large.num_hidden_layers, large.num_attention_heads, large.kv_heads) == (960, 32, 15, 5)
    assert large.rope_theta == small.rope_theta == 100000.0 and large.eos_token_id == 2


@pytest.mark.parametrize("preset", ["llama-tiny", "smollm2-135m"])
def test_llama_preset_equals_its_hf_export_after_resolved(tmp_path: Path, preset: str) -> None:
    config = LLAMA_PRESETS.get(preset)
    if preset == "llama-tiny":  # the whole path: save_hf -> load_model
        save_hf(tiny_llama(preset=preset), tmp_path)
        back = load_model(tmp_path).config
    else:  # 135M parameters: the same config translation, without writing the weights
        (tmp_path / "config.json").write_text(json.dumps(config_to_hf(config)), encoding="utf-8")
        back = config_from_hf(read_hf_config(tmp_path))
    assert back != config  # the HF reader states head_dim / num_key_value_heads that the preset leaves None
    assert back.resolved() == config.resolved()
    assert config.resolved().resolved() == config.resolved()


def test_gpt_resolved_fills_defaults(tmp_path: Path) -> None:
    config = GPT_PRESETS.get("nano-char", mlp="swiglu", n_kv_head=None)
    r = config.resolved()
    assert (r.n_kv_head, r.mlp_hidden) == (config.n_head, config.hidden_size) and r != config
    save_llmlab(tiny_gpt(), tmp_path)
    assert load_model(tmp_path).config.resolved() == GPT_PRESETS.get("nano-char").resolved()


def _greedy(model: torch.nn.Module, ids: torch.Tensor, steps: int) -> list[int]:
    out = []
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids).logits[:, -1].argmax(-1, keepdim=True)
            out.append(int(nxt))
            ids = torch.cat([ids, nxt], dim=1)
    return out


def test_gpt2_hf_export_stops_at_the_given_eos(tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = tiny_gpt(vocab_size=64, n_head=4)
    prompt = torch.tensor([[5, 6, 7]])
    greedy = _greedy(model, prompt, 8)
    k = next((i for i in range(2, 8) if greedy[i] not in greedy[:i]), 0)  # a token first produced at step k
    eos = greedy[k]
    save_hf(model, tmp_path / "plain")
    save_hf(model, tmp_path / "ids", token_ids={"bos_token_id": 0, "eos_token_id": eos, "pad_token_id": 1})
    for name in ("config.json", "generation_config.json"):
        saved = json.loads((tmp_path / "ids" / name).read_text(encoding="utf-8"))
        assert (saved["bos_token_id"], saved["eos_token_id"], saved["pad_token_id"]) == (0, eos, 1)
    assert not (tmp_path / "plain" / "generation_config.json").exists()

    def hf_generate(folder: Path) -> list[int]:
        hf = AutoModelForCausalLM.from_pretrained(folder).eval()
        out = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False)
        return out[0, prompt.shape[1] :].tolist()

    assert hf_generate(tmp_path / "ids") == greedy[: k + 1]  # stops right after the eos
    assert hf_generate(tmp_path / "plain") == greedy  # without ids: no stop (transformers' 50256 is not in vocab)


def test_token_ids_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown token id key 'eos'"):
        save_hf(tiny_llama(), tmp_path, token_ids={"eos": 2})
    with pytest.raises(ValueError, match="eos_token_id must be a non-negative integer"):
        save_hf(tiny_llama(), tmp_path, token_ids={"eos_token_id": -1})
    save_hf(tiny_llama(), tmp_path, token_ids={"eos_token_id": 7, "pad_token_id": None})
    saved = json.loads((tmp_path / "generation_config.json").read_text(encoding="utf-8"))
    assert saved["eos_token_id"] == 7 and saved["bos_token_id"] == 1  # llama's own bos kept, eos overridden
