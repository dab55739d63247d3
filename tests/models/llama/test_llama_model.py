"""The Llama family: parity with `transformers.LlamaForCausalLM`, KV cache, save/load, presets, validation."""

import json

import pytest
import torch
from tiny_models import tiny_hf_llama
from transformers import LlamaForCausalLM

from llmlab.models.llama import PRESETS, Llama, LlamaConfig, ModelOutput, load_hf_llama, save_hf_llama
from llmlab.models.llama.hf import config_from_hf

LLAMA3_SCALING = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}
# Tiny HF configs: MHA untied, GQA tied, MQA + biases, and the three RoPE scalings (sequences longer
# than max_position_embeddings exercise dynamic NTK's recomputed base).
HF_VARIANTS = {
    "mha-untied": {},
    "gqa-tied": {"num_key_value_heads": 2, "tie_word_embeddings": True},
    "mqa-bias-headdim": {"num_key_value_heads": 1, "attention_bias": True, "mlp_bias": True, "head_dim": 16},
    "rope-linear": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
    "rope-dynamic": {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}, "max_position_embeddings": 16},
    "rope-llama3": {"rope_scaling": LLAMA3_SCALING, "rope_theta": 500000.0, "num_key_value_heads": 2},
}


def hf_tiny(**overrides) -> LlamaForCausalLM:
    base = dict(vocab_size=97, num_key_value_heads=None, max_position_embeddings=64, rms_norm_eps=1e-5)
    return tiny_hf_llama(**{**base, "tie_word_embeddings": False, **overrides})


@pytest.mark.parametrize("variant", list(HF_VARIANTS))
def test_hf_round_trip_same_logits(tmp_path, variant):
    hf = hf_tiny(**HF_VARIANTS[variant])
    hf.save_pretrained(tmp_path / "hf")
    model = load_hf_llama(tmp_path / "hf").eval()
    x = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = hf(x).logits
        torch.testing.assert_close(model(x).logits, ref)
        save_hf_llama(model, tmp_path / "back")
        again = LlamaForCausalLM.from_pretrained(tmp_path / "back").eval()
        torch.testing.assert_close(again(x).logits, ref)
    assert model.config.tie_word_embeddings == hf.config.tie_word_embeddings
    if model.config.tie_word_embeddings:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()


def test_sharded_hf_checkpoint_is_read(tmp_path):
    hf = hf_tiny(num_key_value_heads=2)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    x = torch.randint(0, 97, (1, 12))
    with torch.no_grad():
        torch.testing.assert_close(load_hf_llama(tmp_path)(x).logits, hf(x).logits)


def test_rope_parameters_layout_of_transformers_5_is_read():
    cfg = config_from_hf(
        {
            "model_type": "llama",
            "vocab_size": 10,
            "hidden_size": 8,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1234.0},
        }
    )
    assert cfg.rope_theta == 1234.0 and cfg.rope_scaling == {"rope_type": "linear", "factor": 4.0}


@pytest.mark.parametrize("variant", ["gqa-tied", "rope-llama3"])
def test_cached_decoding_equals_full_forward(variant):
    hf = hf_tiny(**HF_VARIANTS[variant])
    model = Llama(config_from_hf(hf.config.to_dict()))
    model.load_state_dict(hf.state_dict(), strict=False)
    model.eval()
    x = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x).logits
        cache = model.make_kv_cache(batch_size=2, max_len=20)
        steps = [model(x[:, :8], kv_cache=cache).logits]  # prefill 8 tokens, then one at a time
        for i in range(8, 20):
            steps.append(model(x[:, i : i + 1], kv_cache=cache).logits)
    assert cache.seq_len == 20
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def test_padding_mask_and_eager_backend_match_sdpa():
    torch.manual_seed(0)
    cfg = PRESETS.get("llama-tiny")
    sdpa = Llama(cfg).eval()
    eager = Llama(PRESETS.get("llama-tiny", attention="eager")).eval()
    eager.load_state_dict(sdpa.state_dict())
    x = torch.randint(0, cfg.vocab_size, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0  # left padding in row 1
    with torch.no_grad():
        a = sdpa(x, attention_mask=mask)
        b = eager(x, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(a.logits, b.logits, rtol=1e-4, atol=1e-5)
    assert len(b.attentions) == cfg.num_hidden_layers and b.attentions[0].shape == (2, 4, 10, 10)
    assert b.attentions[0][1, :, 5, :3].abs().max() == 0  # padding is never attended to
    assert b.attentions[0][0].triu(1).abs().max() == 0  # causal


def test_loss_and_output_type():
    torch.manual_seed(0)
    model = Llama(PRESETS.get("llama-tiny"))
    x = torch.randint(0, 256, (2, 8))
    y = x.clone()
    y[:, :2] = -100
    out = model(x, y)
    assert isinstance(out, ModelOutput) and out.logits.shape == (2, 8, 256)
    ref = torch.nn.functional.cross_entropy(out.logits[:, 2:].reshape(-1, 256), x[:, 2:].reshape(-1))
    torch.testing.assert_close(out.loss, ref)
    out.loss.backward()
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None
    assert float(out.aux_loss) == 0.0


def test_save_pretrained_round_trip(tmp_path):
    torch.manual_seed(0)
    model = Llama(PRESETS.get("llama-tiny", rope_scaling={"rope_type": "linear", "factor": 2.0})).eval()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "model_config.json").read_text())
    assert cfg["family"] == "llama" and cfg["rope_scaling"]["factor"] == 2.0
    loaded = Llama.from_pretrained(tmp_path).eval()
    x = torch.randint(0, 256, (1, 9))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, model(x).logits)
    assert not list(tmp_path.glob(".tmp-*"))  # atomic writes leave no temp files
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    with torch.no_grad():
        torch.testing.assert_close(
            Llama.from_pretrained(tmp_path / "half")(x).logits, model(x).logits, atol=2e-3, rtol=0
        )


def test_generate_loop_runs_a_llama():
    from llmlab.generate import generate

    torch.manual_seed(0)
    model = Llama(PRESETS.get("llama-tiny")).eval()
    prompt = torch.tensor([[1, 2, 3]])
    with_cache = generate(model, prompt, max_new_tokens=6, temperature=0.0)
    no_cache = generate(model, prompt, max_new_tokens=6, temperature=0.0, use_cache=False)
    assert with_cache.shape == (1, 9) and torch.equal(with_cache, no_cache)


def test_smollm2_preset_has_the_published_size():
    model = Llama.from_preset("smollm2-135m")
    assert model.num_parameters() == 134_515_008  # SmolLM2-135M, tied embeddings


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"num_key_value_heads": 3}, "multiple of"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "yarn"),
        ({"rope_scaling": {"rope_type": "llama3", "factor": 2.0}}, "low_freq_factor"),
        ({"attention": "flash"}, "attention"),
    ],
)
def test_invalid_configs_raise_one_clear_error(overrides, message):
    with pytest.raises(ValueError, match=message):
        LlamaConfig(**overrides).validate()


def test_unknown_config_field_is_named():
    with pytest.raises(ValueError, match="rope_base"):
        LlamaConfig.from_dict({"rope_base": 3.0})
