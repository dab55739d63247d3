"""GPT: every variant trains, cached decoding == full forward, causality, padding, save/load, presets."""

import json

import pytest
import torch
from tiny_models import tiny_gpt

from llmlab.models.gpt import GPT, PRESETS, GPTConfig, count_parameters, preset_table

TINY = dict(vocab_size=32, block_size=16, n_layer=2, n_head=4, n_embd=32)

VARIANTS = {
    "sdpa": {},
    "eager": {"attention": "eager"},
    "linear": {"attention": "linear"},
    "local": {"attention": "local", "window_size": 4, "n_global_tokens": 1},
    "sinusoidal": {"position": "sinusoidal"},
    "rope": {"position": "rope", "rope_theta": 500.0},
    "alibi": {"position": "alibi"},
    "nopos": {"position": "none"},
    "rmsnorm": {"norm": "rmsnorm"},
    "post_norm": {"pre_norm": False},
    "swiglu": {"mlp": "swiglu", "bias": False},
    "gelu_exact": {"mlp": "gelu_exact"},
    "moe": {"moe_num_experts": 4, "moe_top_k": 2},
    "gqa": {"n_kv_head": 2},
    "mqa": {"n_kv_head": 1},
    "untied_dropout": {"tie_embeddings": False, "dropout": 0.1},
    "llama_like": {"position": "rope", "norm": "rmsnorm", "mlp": "swiglu", "n_kv_head": 2, "bias": False},
    "encoder": {"causal": False},
    "cross": {"cross_attention": True},
}


def _tiny(**kw) -> GPT:
    return tiny_gpt(**{**TINY, **kw}).train()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_trains(name):
    model = _tiny(**VARIANTS[name])
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 32, (4, 16), generator=g)
    y = torch.roll(x, -1, dims=1)
    enc = torch.randn(4, 5, 32, generator=g) if model.config.cross_attention else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(10):
        out = model(x, y, encoder_hidden_states=enc)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    assert out.logits.shape == (4, 16, 32)
    assert losses[-1] < 0.75 * losses[0], losses


def test_moe_loss_includes_aux_loss():
    model = _tiny(moe_num_experts=4, moe_top_k=2, moe_aux_loss_coef=0.5).eval()
    x = torch.randint(0, 32, (2, 8))
    out = model(x, x)
    assert out.aux_loss.item() >= 1.0 - 1e-4  # E * sum f_i P_i >= 1 (uniform routing gives exactly 1)
    ce = torch.nn.functional.cross_entropy(out.logits.view(-1, 32), x.view(-1))
    torch.testing.assert_close(out.loss, ce + 0.5 * out.aux_loss)
    dense = _tiny()(x, x)
    assert dense.aux_loss.item() == 0.0
    torch.testing.assert_close(dense.loss, torch.nn.functional.cross_entropy(dense.logits.view(-1, 32), x.view(-1)))


def test_loss_ignores_minus_100():
    model = _tiny().eval()
    x = torch.randint(0, 32, (2, 8))
    y = x.clone()
    y[:, :4] = -100
    out = model(x, y)
    ref = torch.nn.functional.cross_entropy(out.logits[:, 4:].reshape(-1, 32), x[:, 4:].reshape(-1))
    torch.testing.assert_close(out.loss, ref)


CACHE_VARIANTS = ["sdpa", "eager", "alibi", "rope", "sinusoidal", "nopos", "linear", "local", "gqa", "mqa"]
CACHE_VARIANTS += ["moe", "llama_like", "post_norm", "cross"]


@pytest.mark.parametrize("name", CACHE_VARIANTS)
def test_cached_decoding_equals_full_forward(name):
    model = _tiny(**VARIANTS[name]).eval()
    x = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(2))
    enc = torch.randn(2, 5, 32) if model.config.cross_attention else None
    with torch.no_grad():
        full = model(x, encoder_hidden_states=enc).logits
        cache = model.make_kv_cache(batch_size=2)
        pieces = [model(x[:, :5], kv_cache=cache, encoder_hidden_states=enc).logits]  # prefill
        pieces.append(model(x[:, 5:8], kv_cache=cache, encoder_hidden_states=enc).logits)  # chunk after a prefix
        for i in range(8, 12):  # one token at a time
            pieces.append(model(x[:, i : i + 1], kv_cache=cache, encoder_hidden_states=enc).logits)
    assert cache.seq_len == 12
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-5)


def test_cached_decoding_with_padding_mask():
    model = _tiny(position="alibi").eval()
    x = torch.randint(0, 32, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[1, :3] = 0  # left padding in row 1
    with torch.no_grad():
        full = model(x, attention_mask=mask).logits
        cache = model.make_kv_cache(2)
        a = model(x[:, :6], attention_mask=mask[:, :6], kv_cache=cache).logits
        b = [model(x[:, i : i + 1], attention_mask=mask[:, : i + 1], kv_cache=cache).logits for i in range(6, 10)]
    torch.testing.assert_close(torch.cat([a, *b], dim=1), full, rtol=1e-4, atol=1e-5)


def test_kv_cache_overflow_and_block_size_errors():
    model = _tiny().eval()
    cache = model.make_kv_cache(1, max_len=4)
    model(torch.zeros(1, 4, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="KV cache is full"):
        model(torch.zeros(1, 1, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize("attention", ["sdpa", "eager", "linear", "local"])
def test_causal_vs_encoder_mode(attention):
    extra = {"window_size": 16} if attention == "local" else {}
    x = torch.randint(0, 32, (1, 8))
    x2 = x.clone()
    x2[0, -1] = (x[0, -1] + 1) % 32  # change the LAST token
    for causal in (True, False):
        model = _tiny(attention=attention, causal=causal, **extra).eval()
        with torch.no_grad():
            a, b = model(x).logits, model(x2).logits
        earlier_changed = not torch.allclose(a[:, :-1], b[:, :-1])
        assert earlier_changed == (not causal), f"causal={causal}"


@pytest.mark.parametrize("attention", ["sdpa", "eager", "local", "linear"])
def test_padding_mask_hides_padded_keys(attention):
    """Encoder mode with right padding: real positions equal the unpadded shorter sequence."""
    extra = {"window_size": 3} if attention == "local" else {}
    model = _tiny(attention=attention, causal=False, **extra).eval()
    x = torch.randint(0, 32, (2, 10))
    mask = torch.ones(2, 10, dtype=torch.long)
    mask[0, 6:] = 0
    with torch.no_grad():
        padded = model(x, attention_mask=mask).logits
        short = model(x[:1, :6]).logits
        no_mask = model(x).logits
    torch.testing.assert_close(padded[:1, :6], short, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(padded[1], no_mask[1], rtol=1e-4, atol=1e-5)


def test_output_attentions():
    for attention in ("eager", "sdpa"):
        model = _tiny(attention=attention).eval()
        out = model(torch.randint(0, 32, (2, 6)), output_attentions=True)
        assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 4, 6, 6)
        torch.testing.assert_close(out.attentions[0].sum(-1), torch.ones(2, 4, 6))
        assert torch.all(out.attentions[0].triu(diagonal=1) == 0)
    assert _tiny()(torch.randint(0, 32, (1, 4))).attentions is None
    with pytest.raises(ValueError, match="linear"):
        _tiny(attention="linear")(torch.randint(0, 32, (1, 4)), output_attentions=True)


def test_gpt2_init_and_tying():
    model = _tiny(n_layer=8, n_embd=64)
    assert model.lm_head.weight is model.transformer.wte.weight
    std_proj = model.transformer.h[0].attn.c_proj.weight.std().item()
    std_fc = model.transformer.h[0].mlp.c_fc.weight.std().item()
    assert abs(std_fc - 0.02) < 0.003
    assert abs(std_proj - 0.02 / 4.0) < 0.001  # 0.02 / sqrt(2 * 8)
    assert model.transformer.h[0].attn.c_attn.bias.abs().sum() == 0
    untied = _tiny(tie_embeddings=False)
    assert untied.lm_head.weight is not untied.transformer.wte.weight


def test_gpt2_naming():
    names = set(_tiny().state_dict())
    for key in [
        "transformer.wte.weight",
        "transformer.wpe.weight",
        "transformer.h.1.ln_1.weight",
        "transformer.h.1.attn.c_attn.weight",
        "transformer.h.1.attn.c_proj.bias",
        "transformer.h.1.ln_2.bias",
        "transformer.h.1.mlp.c_fc.weight",
        "transformer.h.1.mlp.c_proj.weight",
        "transformer.ln_f.weight",
        "lm_head.weight",
    ]:
        assert key in names
    assert not any("rope" in n or "pos_table" in n for n in _tiny(position="rope").state_dict())


# ---------------------------------------------------------------- presets and parameter counts
def test_presets_and_param_counts():
    assert {"nano-char", "shakespeare-char", "gpt2", "tiny-llama", "tiny-moe"} <= set(PRESETS.names())
    assert count_parameters(PRESETS.get("gpt2")) == 124_439_808  # GPT-2 small, computed on the meta device
    sc = PRESETS.get("shakespeare-char")
    assert (sc.n_layer, sc.n_head, sc.n_embd, sc.block_size, sc.dropout) == (4, 4, 128, 64, 0.0)
    table = dict(preset_table())
    for name in ("nano-char", "shakespeare-char", "tiny-moe"):
        model = GPT.from_preset(name)
        assert model.num_parameters() == table[name]
    llama = PRESETS.get("tiny-llama")
    assert (llama.norm, llama.mlp, llama.position, llama.bias, llama.tie_embeddings) == (
        "rmsnorm",
        "swiglu",
        "rope",
        False,
        False,
    )
    assert llama.kv_heads < llama.n_head


def test_presets_return_copies_and_overrides():
    PRESETS.get("nano-char").n_layer = 99
    assert PRESETS.get("nano-char").n_layer == 2
    model = GPT.from_preset("nano-char", vocab_size=10, position="rope")
    assert model.config.vocab_size == 10 and model.config.position == "rope"
    with pytest.raises(ValueError, match="unknown model preset 'nope'; choose one of"):
        GPT.from_preset("nope")
    with pytest.raises(ValueError, match="n_layers"):
        GPT.from_preset("nano-char", n_layers=3)


def test_num_parameters_exclude_embeddings():
    model = _tiny()
    assert model.num_parameters(exclude_embeddings=True) == model.num_parameters() - 16 * 32
    untied = _tiny(tie_embeddings=False)
    assert untied.num_parameters() - untied.num_parameters(exclude_embeddings=True) == 16 * 32 + 32 * 32


# ---------------------------------------------------------------- config validation
@pytest.mark.parametrize(
    "kw, match",
    [
        ({"n_embd": 30}, "divisible by model.n_head"),
        ({"n_kv_head": 3}, "multiple of model.n_kv_head"),
        ({"attention": "flash"}, "choose one of: sdpa, eager, linear, local"),
        ({"position": "xpos"}, "learned, sinusoidal, rope, alibi, none"),
        ({"norm": "batchnorm"}, "layernorm, rmsnorm"),
        ({"mlp": "relu"}, "gelu, gelu_exact, swiglu"),
        ({"position": "rope", "n_embd": 36, "n_head": 4}, "even head dimension"),
        ({"attention": "local"}, "window_size"),
        ({"attention": "linear", "position": "alibi"}, "alibi"),
        ({"moe_num_experts": 2, "moe_top_k": 3}, "moe_top_k"),
        ({"dropout": 1.0}, "dropout"),
        ({"n_layer": 0}, "n_layer"),
    ],
)
def test_config_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**TINY, **kw}).validate()


# ---------------------------------------------------------------- save / load
@pytest.mark.parametrize("tied", [True, False])
def test_save_pretrained_round_trip(tmp_path, tied):
    model = _tiny(position="rope", tie_embeddings=tied).eval()
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.safetensors", "model_config.json"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "m" / "model.safetensors"), "pt") as f:
        assert ("lm_head.weight" in f.keys()) == (not tied)
    loaded = GPT.from_pretrained(tmp_path / "m").eval()
    assert loaded.config == model.config
    assert (loaded.lm_head.weight is loaded.transformer.wte.weight) == tied
    x = torch.randint(0, 32, (2, 8))
    torch.testing.assert_close(loaded(x).logits, model(x).logits)


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        GPT.from_pretrained(tmp_path)
    model = _tiny()
    model.save_pretrained(tmp_path)
    w = tmp_path / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(ValueError, match="corrupt or truncated"):
        GPT.from_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "model_config.json").read_text())
    cfg["n_layer"] = 3  # weights no longer match
    (tmp_path / "model_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="missing"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "model_config.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "model_config.json").write_text(json.dumps({**cfg, "n_layerz": 1}))
    with pytest.raises(ValueError, match="n_layerz"):
        GPT.from_pretrained(tmp_path)


def test_gpt_config_works_with_load_config(tmp_path):
    from llmlab.config import load_config, save_config

    cfg = load_config(GPTConfig, None, ["n_layer=2", "n_kv_head=4", "position=rope"])
    assert cfg.n_layer == 2 and cfg.n_kv_head == 4 and cfg.position == "rope"
    save_config(cfg, tmp_path / "m.yaml")
    assert load_config(GPTConfig, tmp_path / "m.yaml") == cfg
    with pytest.raises(ValueError, match="choose one of: sdpa, eager, linear, local"):
        load_config(GPTConfig, None, ["attention=flash"])
