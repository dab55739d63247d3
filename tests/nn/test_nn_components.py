"""Positions (sinusoidal, RoPE vs HF Llama, ALiBi), norms, MLPs, MoE routing/aux loss and the KV cache."""

import dataclasses
import math

import pytest
import torch

from llmlab.nn import (
    GELUMLP,
    Block,
    BlockConfig,
    KVCache,
    MoE,
    RMSNorm,
    SwiGLUMLP,
    alibi_bias,
    alibi_slopes,
    apply_rope,
    build_mlp,
    build_norm,
    default_mlp_hidden,
    rope_cos_sin,
    sinusoidal_table,
)


def test_sinusoidal_table_values():
    pe = sinusoidal_table(50, 16)
    p, i = 7, 3
    assert pe.shape == (50, 16)
    torch.testing.assert_close(pe[p, 2 * i], torch.tensor(math.sin(p / 10000 ** (2 * i / 16))))
    torch.testing.assert_close(pe[p, 2 * i + 1], torch.tensor(math.cos(p / 10000 ** (2 * i / 16))))


def test_rope_matches_hf_llama():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding, apply_rotary_pos_emb

    cfg = LlamaConfig(hidden_size=64, num_attention_heads=4, rope_theta=500.0, max_position_embeddings=32)
    x = torch.randn(2, 4, 10, 16)
    cos, sin = LlamaRotaryEmbedding(cfg)(x, torch.arange(10)[None].expand(2, 10))
    ref, _ = apply_rotary_pos_emb(x, x, cos, sin)
    c, s = rope_cos_sin(32, 16, theta=500.0)
    torch.testing.assert_close(apply_rope(x, c[:10], s[:10]), ref)


def test_rope_scores_depend_only_on_relative_position():
    c, s = rope_cos_sin(64, 8)
    q, k = torch.randn(8), torch.randn(8)

    def score(i, j):
        return (apply_rope(q, c[i], s[i]) @ apply_rope(k, c[j], s[j])).item()

    assert score(10, 3) == pytest.approx(score(40, 33), rel=1e-4)
    assert score(10, 3) != pytest.approx(score(10, 4), rel=1e-4)
    torch.testing.assert_close(apply_rope(q, c[5], s[5]).norm(), q.norm())  # a rotation


def test_alibi_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert alibi_slopes(6).shape == (6,)
    bias = alibi_bias(alibi_slopes(2), torch.arange(4), torch.arange(4))
    assert bias.shape == (1, 2, 4, 4)
    assert bias[0, 0, 3, 0].item() == pytest.approx(-(2**-4) * 3)  # head 0 of 2 heads: slope 2^(-8/2), distance 3
    enc = alibi_bias(alibi_slopes(2), torch.arange(4), torch.arange(4), causal=False)
    assert torch.equal(enc[0, 0], enc[0, 0].T) and enc.max() == 0


def test_norms():
    x = torch.randn(3, 5, 16) * 3 + 1
    rms = RMSNorm(16, eps=1e-6)
    torch.testing.assert_close(rms(x), x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    ln = build_norm("layernorm", 16, bias=False)
    assert ln.bias is None
    y = ln(x)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 5), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="layernorm, rmsnorm"):
        build_norm("batchnorm", 16)


def test_mlps():
    x = torch.randn(2, 3, 8)
    gelu = GELUMLP(8, 32)
    ref = gelu.c_proj(
        0.5 * gelu.c_fc(x) * (1 + torch.tanh(math.sqrt(2 / math.pi) * (gelu.c_fc(x) + 0.044715 * gelu.c_fc(x) ** 3)))
    )
    torch.testing.assert_close(gelu(x), ref)  # gelu_new (tanh approximation), as HF GPT-2
    sw = SwiGLUMLP(8, 24)
    h = torch.nn.functional.silu(sw.gate_proj(x)) * sw.up_proj(x)
    torch.testing.assert_close(sw(x), sw.down_proj(h))
    assert default_mlp_hidden("gelu", 32) == 128
    assert default_mlp_hidden("swiglu", 32) == 88  # ceil(2/3 * 128) rounded up to 8
    exact = build_mlp("gelu_exact", 8, 32)
    exact.load_state_dict(gelu.state_dict())
    torch.testing.assert_close(exact(x), gelu.c_proj(torch.nn.functional.gelu(gelu.c_fc(x))))
    relu = build_mlp("relu", 8, 32)  # T5 v1.0
    relu.load_state_dict(gelu.state_dict())
    torch.testing.assert_close(relu(x), gelu.c_proj(torch.relu(gelu.c_fc(x))))
    geglu = build_mlp("gated-gelu", 8, 24, bias=False)  # T5 v1.1
    geglu.load_state_dict(sw.state_dict())
    h = torch.nn.functional.gelu(sw.gate_proj(x), approximate="tanh") * sw.up_proj(x)
    torch.testing.assert_close(geglu(x), sw.down_proj(h))
    with pytest.raises(ValueError, match="gelu, gelu_exact, swiglu, relu, gated-gelu"):
        build_mlp("tanh", 8, 8)


def test_moe_top_k_routing_and_output():
    torch.manual_seed(0)
    moe = MoE(8, 16, num_experts=4, top_k=2)
    x = torch.randn(2, 5, 8)
    gates, experts, probs = moe.route(x.view(-1, 8))
    assert experts.shape == (10, 2) and torch.all(experts[:, 0] != experts[:, 1])
    torch.testing.assert_close(gates.sum(-1), torch.ones(10))
    # the chosen experts are the two with the highest router probability
    assert torch.equal(experts.sort(-1).values, probs.topk(2, -1).indices.sort(-1).values)
    y, aux = moe(x)
    flat = x.view(-1, 8)
    ref = torch.stack(
        [sum(gates[n, s] * moe.experts[int(experts[n, s])](flat[n]) for s in range(2)) for n in range(10)]
    )
    torch.testing.assert_close(y.view(-1, 8), ref)
    # Switch aux loss: E * sum_i f_i * P_i
    f = torch.bincount(experts.view(-1), minlength=4).float() / experts.numel()
    torch.testing.assert_close(aux, 4 * (f * probs.mean(0)).sum())
    aux.backward()
    assert moe.router.weight.grad is not None and moe.router.weight.grad.abs().sum() > 0


def test_moe_top1_uses_one_expert_per_token():
    torch.manual_seed(0)
    moe = MoE(8, 16, num_experts=3, top_k=1, kind="swiglu")
    gates, experts, _ = moe.route(torch.randn(6, 8))
    assert experts.shape == (6, 1) and torch.all(gates == 1.0)
    with pytest.raises(ValueError, match="moe_top_k"):
        MoE(8, 16, num_experts=2, top_k=3)


def test_kv_cache_update_and_overflow():
    cache = KVCache(n_layer=2, batch_size=1, max_len=5, n_kv_head=2, head_dim=4)
    k = torch.randn(1, 2, 3, 4)
    ks, vs = cache.update(0, k, k + 1)
    assert ks.shape == (1, 2, 3, 4) and torch.equal(ks, k) and torch.equal(vs, k + 1)
    cache.advance(3)
    ks, _ = cache.update(0, torch.ones(1, 2, 2, 4), torch.ones(1, 2, 2, 4))
    assert ks.shape == (1, 2, 5, 4) and torch.equal(ks[:, :, :3], k)
    cache.advance(2)
    with pytest.raises(ValueError, match="max_len=5"):
        cache.update(0, torch.ones(1, 2, 1, 4), torch.ones(1, 2, 1, 4))
    cache.reset()
    assert cache.seq_len == 0


def test_block_from_its_config_alone():
    """`Block(BlockConfig, layer_idx)` works without any model family; pre- and post-norm, dense and MoE."""
    for cfg in (
        BlockConfig(n_embd=32, n_head=4),
        BlockConfig(n_embd=32, n_head=4, n_kv_head=2, norm="rmsnorm", mlp="swiglu", mlp_hidden=48, bias=False),
        BlockConfig(n_embd=32, n_head=4, pre_norm=False, moe_num_experts=4, moe_top_k=2),
    ):
        torch.manual_seed(0)
        block = Block(cfg, layer_idx=0).eval()
        x = torch.randn(2, 5, 32)
        y, weights, aux = block(x, is_causal=True)
        assert y.shape == x.shape and weights is None
        assert (aux is not None) == (cfg.moe_num_experts > 0)
        assert not torch.allclose(y, x)
    assert Block(BlockConfig(n_embd=32, n_head=4, mlp_hidden=48)).mlp.c_fc.out_features == 48
    with pytest.raises(dataclasses.FrozenInstanceError):
        BlockConfig(n_embd=32, n_head=4).n_head = 2  # frozen: a block config is built once


def test_gpt_builds_its_blocks_from_its_config():
    from llmlab.models.gpt import GPT, GPTConfig

    config = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_kv_head=2, n_embd=32, mlp="swiglu")
    block = config.block_config()
    assert (block.n_kv_head, block.mlp, block.mlp_hidden) == (2, "swiglu", config.hidden_size)
    model = GPT(config)
    ref = Block(block, layer_idx=1)
    assert {k: v.shape for k, v in model.layers[1].state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
