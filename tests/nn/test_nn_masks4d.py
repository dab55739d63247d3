"""4-D attention masks (B, 1, T, S) passed through GPT/Llama, and the enable_gqa decode path of Attention."""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_gpt, tiny_llama

from llmlab.nn import attention as attention_mod
from llmlab.nn.attention import Attention
from llmlab.nn.masks import build_attention_mask


def tiny(family: str) -> torch.nn.Module:
    if family == "gpt":
        return tiny_gpt(vocab_size=50, n_head=4, n_kv_head=2, position="rope")
    return tiny_llama(vocab_size=50, max_position_embeddings=32)


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_4d_mask_equals_padding_mask(family: str) -> None:
    model = tiny(family)
    ids = torch.randint(0, 50, (2, 7), generator=torch.Generator().manual_seed(1))
    pad = torch.ones(2, 7, dtype=torch.long)
    pad[1, :3] = 0  # left padding in row 1
    mask4d = pad.bool()[:, None, None, :].expand(2, 1, 7, 7)  # (B, 1, T, S): keys that are real
    with torch.no_grad():
        want = model(ids, attention_mask=pad).logits
        got = model(ids, attention_mask=mask4d).logits
        plain = model(ids).logits
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got[1], plain[1], atol=1e-4)  # the padding mask changed row 1


@pytest.mark.parametrize("family", ["gpt", "llama"])
def test_block_diagonal_mask_isolates_segments(family: str) -> None:
    model = tiny(family)
    g = torch.Generator().manual_seed(2)
    first, second = torch.randint(0, 50, (1, 4), generator=g), torch.randint(0, 50, (1, 5), generator=g)
    seg = torch.tensor([[1] * 4 + [2] * 5])
    block = (seg[:, :, None] == seg[:, None, :])[:, None]  # (1, 1, T, T); the model adds causality
    pos = torch.cat([torch.arange(4), torch.arange(5)])[None]
    with torch.no_grad():
        packed = model(torch.cat([first, second], 1), attention_mask=block, position_ids=pos).logits
        changed = model(torch.cat([(first + 1) % 50, second], 1), attention_mask=block, position_ids=pos).logits
        alone = model(second).logits
    torch.testing.assert_close(packed[:, 4:], changed[:, 4:])  # the second segment never sees the first
    torch.testing.assert_close(packed[:, 4:], alone, atol=1e-5, rtol=1e-5)  # ... and is computed as if alone
    assert not torch.allclose(packed[:, :4], changed[:, :4])


def test_build_mask_ands_4d_with_causal_and_checks_shape() -> None:
    full = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    mask, is_causal = build_attention_mask(3, 3, causal=True, key_padding_mask=full)
    assert not is_causal
    assert torch.equal(mask[0, 0], torch.ones(3, 3, dtype=torch.bool).tril())  # causality kept
    with pytest.raises(ValueError, match="must be bool"):
        build_attention_mask(3, 3, causal=True, key_padding_mask=full.long())
    with pytest.raises(ValueError, match="shape"):
        build_attention_mask(2, 3, causal=True, key_padding_mask=full)


def test_enable_gqa_decode_path_matches_repeat_kv(monkeypatch: pytest.MonkeyPatch) -> None:
    if not attention_mod.SDPA_HAS_GQA:
        pytest.skip("torch < 2.5 has no enable_gqa")
    torch.manual_seed(0)
    attn = Attention(32, 4, 2, fused_qkv=False, bias=False).eval()
    past, new = torch.randn(2, 5, 32), torch.randn(2, 1, 32)
    key_pad = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    outs = {}
    for gqa in (True, False):
        monkeypatch.setattr(attention_mod, "SDPA_HAS_GQA", gqa)
        cache = attention_mod.KVCache(1, 2, 8, 2, 8)
        with torch.no_grad():
            attn(past, kv_cache=cache)
            cache.advance(5)
            mask, _ = build_attention_mask(1, 6, causal=True, key_padding_mask=key_pad)
            outs[gqa] = attn(new, kv_cache=cache, attn_mask=mask)[0]
    torch.testing.assert_close(outs[True], outs[False])
