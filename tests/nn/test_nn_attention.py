"""Attention backends: linear == quadratic reference, sdpa == eager, local windows, GQA/MQA, cross-attention."""

import pytest
import torch

from llmlab.nn import (
    Attention,
    alibi_slopes,
    build_attention_mask,
    eager_attention,
    linear_attention,
    linear_attention_quadratic,
    repeat_kv,
)
from llmlab.nn.attention import ATTENTION_BACKENDS


@pytest.mark.parametrize("past", [0, 5])
def test_linear_attention_cumsum_equals_quadratic(past):
    torch.manual_seed(0)
    q = torch.randn(2, 3, 7, 8)
    k, v = torch.randn(2, 3, 7 + past, 8), torch.randn(2, 3, 7 + past, 8)
    fast = linear_attention(q, k, v, causal=True)
    ref = linear_attention_quadratic(q, k, v, causal=True)
    torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)


def test_linear_attention_noncausal_equals_quadratic_and_padding_hides_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 2, 2, 6, 4).unbind(0)
    torch.testing.assert_close(
        linear_attention(q, k, v, causal=False), linear_attention_quadratic(q, k, v, causal=False)
    )
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    padded = linear_attention(q, k, v, causal=False, key_padding_mask=mask)
    short = linear_attention(q[:1], k[:1, :, :4], v[:1, :, :4], causal=False)
    torch.testing.assert_close(padded[:1], short)


def test_linear_attention_is_causal():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 1, 2, 6, 4).unbind(0)
    y = linear_attention(q, k, v)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, -1] += 1.0
    v2[:, :, -1] += 1.0
    y2 = linear_attention(q, k2, v2)
    torch.testing.assert_close(y[:, :, :-1], y2[:, :, :-1])
    assert not torch.allclose(y[:, :, -1], y2[:, :, -1])


def _masks(t: int, nh: int):
    pad = torch.tensor([[1] * t, [0, 0] + [1] * (t - 2)])
    return {
        "causal": build_attention_mask(t, t, causal=True),
        "padding": build_attention_mask(t, t, causal=True, key_padding_mask=pad),
        "alibi": build_attention_mask(t, t, causal=True, alibi_slopes=alibi_slopes(nh)),
        "local": build_attention_mask(t, t, causal=True, window_size=3, n_global_tokens=1),
        "encoder": build_attention_mask(t, t, causal=False),
        "cached_chunk": build_attention_mask(3, t, causal=True),
    }


@pytest.mark.parametrize("name", ["causal", "padding", "alibi", "local", "encoder", "cached_chunk"])
def test_sdpa_equals_eager_and_weights_sum_to_one(name):
    torch.manual_seed(0)
    t, nh = 8, 4
    mask, is_causal = _masks(t, nh)[name]
    tq = 3 if name == "cached_chunk" else t
    q, k, v = torch.randn(2, nh, tq, 8), torch.randn(2, nh, t, 8), torch.randn(2, nh, t, 8)
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    y, w = eager_attention(q, k, v, mask, is_causal)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    assert w.shape == (2, nh, tq, t)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, nh, tq))
    if name in ("causal", "cached_chunk"):  # no weight on future keys
        past = t - tq
        assert torch.all(w.triu(diagonal=past + 1) == 0)


def test_default_causal_path_builds_no_mask():
    assert build_attention_mask(16, 16, causal=True) == (None, True)
    assert build_attention_mask(1, 16, causal=True) == (None, False)  # one query vs cache: is_causal must be False
    assert build_attention_mask(16, 16, causal=False) == (None, False)


def test_local_mask_window_and_global_tokens():
    mask, _ = build_attention_mask(6, 6, causal=True, window_size=2, n_global_tokens=1)
    allowed = mask[0, 0].int()
    expected = torch.tensor(
        [
            [1, 0, 0, 0, 0, 0],
            [1, 1, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0],
            [1, 0, 1, 1, 0, 0],
            [1, 0, 0, 1, 1, 0],
            [1, 0, 0, 0, 1, 1],
        ]
    )
    assert torch.equal(allowed, expected)
    mask, _ = build_attention_mask(5, 5, causal=False, window_size=2)
    assert torch.equal(mask[0, 0].int(), (torch.arange(5)[:, None] - torch.arange(5)[None]).abs().lt(2).int())


@pytest.mark.parametrize("n_global", [0, 1])
def test_local_attention_ignores_tokens_outside_window(n_global):
    torch.manual_seed(0)
    attn = Attention(16, 2, backend="local").eval()
    x = torch.randn(1, 10, 16)
    x2 = x.clone()
    x2[:, 0] += 5.0  # change token 0
    mask, is_causal = build_attention_mask(10, 10, causal=True, window_size=3, n_global_tokens=n_global)
    y, _ = attn(x, attn_mask=mask, is_causal=is_causal)
    y2, _ = attn(x2, attn_mask=mask, is_causal=is_causal)
    changed = (y - y2).abs().amax(-1)[0] > 1e-6  # (T,)
    if n_global == 0:  # token 0 is only inside the windows of queries 0, 1, 2
        assert changed.tolist() == [True] * 3 + [False] * 7
    else:  # a global token is seen by everyone
        assert changed.all()


@pytest.mark.parametrize("n_kv_head", [4, 2, 1])
def test_gqa_mqa_shapes_and_grouping(n_kv_head):
    torch.manual_seed(0)
    attn = Attention(32, 4, n_kv_head).eval()
    assert attn.c_attn.out_features == 32 + 2 * n_kv_head * 8
    y, _ = attn(torch.randn(2, 5, 32), is_causal=True)
    assert y.shape == (2, 5, 32)
    x = torch.arange(2 * 8).float().view(1, 2, 1, 8)
    r = repeat_kv(x, 3)  # head h uses kv head h // 3
    assert r.shape == (1, 6, 1, 8) and torch.equal(r[0, 2], x[0, 0]) and torch.equal(r[0, 3], x[0, 1])


def test_separate_projections_use_llama_names():
    attn = Attention(32, 4, 2, fused_qkv=False, bias=False)
    names = {n for n, _ in attn.named_parameters()}
    assert names == {"q_proj.weight", "k_proj.weight", "v_proj.weight", "o_proj.weight"}
    assert attn(torch.randn(1, 3, 32), is_causal=True)[0].shape == (1, 3, 32)


@pytest.mark.parametrize("backend", ATTENTION_BACKENDS)
def test_cross_attention_depends_on_encoder_states(backend):
    torch.manual_seed(0)
    attn = Attention(16, 2, backend=backend, cross=True).eval()
    assert {"q_attn.weight", "c_attn.weight", "c_proj.weight"} <= {n for n, _ in attn.named_parameters()}
    x, enc = torch.randn(2, 4, 16), torch.randn(2, 7, 16)
    y1, _ = attn(x, encoder_hidden_states=enc)
    y2, _ = attn(x, encoder_hidden_states=enc + 1.0)
    assert y1.shape == (2, 4, 16)
    assert not torch.allclose(y1, y2)
    with pytest.raises(ValueError, match="encoder_hidden_states"):
        attn(x)


def test_unknown_backend_lists_valid_ones():
    with pytest.raises(ValueError, match="sdpa, eager, linear, local"):
        Attention(16, 2, backend="flash")
