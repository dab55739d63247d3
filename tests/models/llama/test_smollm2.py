"""SmolLM2-135M-Instruct (the packaged Q4_1 GGUF): llmlab's load against transformers' load of the same file.

Both models are loaded once for the module (each load dequantises 135M parameters: several seconds).
"""

import pytest
import torch

from llmlab.models.llama import Llama

PROMPTS = [
    "The capital of France is",
    "中国的首都是",
    "<|im_start|>user\n用一句话介绍你自己<|im_end|>\n<|im_start|>assistant\n",
]
NEW_TOKENS = 10


@pytest.fixture(scope="module")
def gguf_file(smollm2_file):
    return smollm2_file


@pytest.fixture(scope="module")
def ours(smollm2) -> Llama:
    return smollm2[0]


@pytest.fixture(scope="module")
def theirs(smollm2_transformers):
    return smollm2_transformers


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    return smollm2[1]


def greedy_with_cache(model: Llama, ids: list[int], n: int) -> list[int]:
    """Greedy decoding with llmlab's KV cache: prefill the prompt, then one token per step."""
    cache = model.make_kv_cache(batch_size=1, max_len=len(ids) + n)
    x = torch.tensor([ids])
    out: list[int] = []
    for _ in range(n):
        nxt = int(model(x, kv_cache=cache).logits[0, -1].argmax())
        out.append(nxt)
        x = torch.tensor([[nxt]])
    return out


def test_config_matches_the_published_architecture(ours):
    c = ours.config
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.kv_heads) == (30, 576, 9, 3)
    assert (c.vocab_size, c.rope_theta, c.tie_word_embeddings) == (49152, 100000.0, True)
    assert ours.num_parameters() == 134_515_008


@torch.no_grad()
def test_logits_and_greedy_continuations_match_transformers(ours, theirs, tokenizer):
    # A batch of one English and one Chinese prompt (same length after cropping) for the logits check.
    a, b = tokenizer.encode(PROMPTS[0]), tokenizer.encode(PROMPTS[2])
    t = min(len(a), len(b))
    batch = torch.tensor([a[:t], b[:t]])
    torch.testing.assert_close(ours(batch).logits, theirs(batch).logits)
    for prompt in PROMPTS:
        ids = tokenizer.encode(prompt)
        mine = greedy_with_cache(ours, ids, NEW_TOKENS)
        ref = theirs.generate(
            torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, min_new_tokens=NEW_TOKENS
        )
        assert mine == ref[0, len(ids) :].tolist(), f"{prompt!r}: {tokenizer.decode(mine)!r}"
    # The continuation is sensible text, not noise.
    answer = tokenizer.decode(greedy_with_cache(ours, tokenizer.encode(PROMPTS[0]), 3))
    assert "Paris" in answer


def test_chat_template_prompt_matches_transformers_rendering(gguf_file, tokenizer):
    from llmlab.tokenizers.chat import apply_chat_template, chat_template_from_gguf

    text = apply_chat_template([{"role": "user", "content": "你好"}], chat_template_from_gguf(gguf_file.metadata))
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    ids = tokenizer.encode(text)
    assert ids[0] == tokenizer.token_to_id("<|im_start|>")  # special tokens are matched whole
