"""`llmlab.recipes.convert`: tiny random GPT-2 and Llama models in and out of HF, llmlab and GGUF formats."""

import json

import pytest
import torch
from tiny_models import tiny_hf_gpt2, tiny_hf_llama
from transformers import AutoModelForCausalLM, GPT2LMHeadModel, LlamaForCausalLM

from llmlab.data import train_tokenizer
from llmlab.io.gguf import read_gguf
from llmlab.models import load_model
from llmlab.models.gpt import GPT
from llmlab.models.llama import Llama
from llmlab.recipes.convert import convert
from llmlab.tokenizers import load_tokenizer
from llmlab.tokenizers.gguf import load_gguf_tokenizer

VOCAB = 300
CHAT_TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
TEXTS = ["Hello world, 123 times!", "你好，世界。", "<|im_start|>user\nhi<|im_end|>"]


def tiny_gpt2(tie: bool) -> GPT2LMHeadModel:
    return tiny_hf_gpt2(0, vocab_size=VOCAB, tie_word_embeddings=tie)


# `llama-tiny` at width 64 without GQA or tied embeddings (the cases below add them back).
LLAMA = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=96,
    num_key_value_heads=None,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    tie_word_embeddings=False,
)


def tiny_llama(**kw) -> LlamaForCausalLM:
    return tiny_hf_llama(0, **{**LLAMA, **kw})


HF_MODELS = {
    "gpt2-tied": lambda: tiny_gpt2(True),
    "gpt2-untied": lambda: tiny_gpt2(False),
    "llama-gqa-tied": lambda: tiny_llama(num_key_value_heads=2, tie_word_embeddings=True),
    "llama-untied-linear-rope": lambda: tiny_llama(rope_scaling={"rope_type": "linear", "factor": 2.0}),
}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """A small byte-level BPE tokenizer with ChatML control tokens and a chat template."""
    d = tmp_path_factory.mktemp("tok")
    corpus = d / "corpus.txt"
    corpus.write_text(("Hello world, the quick brown fox. 你好，世界。 123 456\n" * 50), encoding="utf-8")
    specials = {"eos": "<|endoftext|>", "bos": "<|im_start|>", "pad": "<|im_end|>"}
    tok = train_tokenizer("bpe", [corpus], vocab_size=VOCAB, special_tokens=specials)
    assert tok.vocab_size <= VOCAB
    return tok


def save_hf_with_tokenizer(hf_model, directory, tokenizer) -> None:
    hf_model.save_pretrained(directory)
    tokenizer.save(directory)
    sidecar = directory / "tokenizer_config.json"
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps({**meta, "chat_template": CHAT_TEMPLATE}))


def logits(model, x):
    with torch.no_grad():
        return model(x).logits


@pytest.mark.parametrize("name", list(HF_MODELS))
def test_hf_to_llmlab_to_hf_and_gguf(tmp_path, name, tokenizer):
    hf = HF_MODELS[name]()
    save_hf_with_tokenizer(hf, tmp_path / "hf", tokenizer)
    x = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(3))
    ref = logits(hf, x)

    # HF -> llmlab: same logits; tokenizer + chat template kept.
    report = convert(tmp_path / "hf", tmp_path / "ours")
    assert report.family == ("gpt" if name.startswith("gpt2") else "llama") and report.chat_template
    ours = load_model(tmp_path / "ours")
    assert isinstance(ours, GPT if name.startswith("gpt2") else Llama)
    torch.testing.assert_close(logits(ours, x), ref)
    assert json.loads((tmp_path / "ours" / "tokenizer_config.json").read_text())["chat_template"] == CHAT_TEMPLATE
    assert load_tokenizer(tmp_path / "ours").encode(TEXTS[0]) == tokenizer.encode(TEXTS[0])

    # llmlab -> HF: transformers loads it and gives the same logits.
    convert(tmp_path / "ours", tmp_path / "hf2", "hf")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "hf2").eval()
    torch.testing.assert_close(logits(again, x), ref)
    assert again.config.tie_word_embeddings == hf.config.tie_word_embeddings

    # llmlab -> GGUF F32 -> llmlab: same logits, the tokenizer readable by llmlab's GGUF reader.
    convert(tmp_path / "ours", tmp_path / "m.gguf")
    torch.testing.assert_close(logits(load_model(tmp_path / "m.gguf"), x), ref)
    md = read_gguf(tmp_path / "m.gguf").metadata
    assert md["tokenizer.chat_template"] == CHAT_TEMPLATE
    if name == "llama-gqa-tied":  # transformers' own GGUF reader agrees (names, Q/K permutation, metadata);
        # it ignores llama.rope.scaling.* (only gpt-oss's are read), so the linear-RoPE variant is not compared.
        theirs = AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="m.gguf").eval()
        torch.testing.assert_close(logits(theirs, x), ref)
    back = load_gguf_tokenizer(md)
    for text in TEXTS:
        assert back.encode(text) == tokenizer.encode(text), text


@pytest.mark.parametrize("name", ["gpt2-untied", "llama-gqa-tied"])
def test_gguf_f16_and_q8_0_stay_within_quantisation_error(tmp_path, name):
    hf = HF_MODELS[name]()
    hf.save_pretrained(tmp_path / "hf")
    x = torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(4))
    ref = logits(hf, x)
    errors = {}
    for dtype in ("f16", "q8_0"):
        out = tmp_path / f"m-{dtype}.gguf"
        convert(tmp_path / "hf", out, dtype=dtype)
        types = set(read_gguf(out).tensor_types.values())
        assert dtype.upper() in types
        errors[dtype] = (logits(load_model(out), x) - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert errors["f16"] < 1e-3 * scale
    assert errors["q8_0"] < 2e-2 * scale
    assert errors["f16"] < errors["q8_0"]  # 8-bit blocks lose more than half precision


def test_gguf_to_gguf_keeps_the_tokenizer_metadata(tmp_path, tokenizer):
    hf = HF_MODELS["llama-gqa-tied"]()
    save_hf_with_tokenizer(hf, tmp_path / "hf", tokenizer)
    convert(tmp_path / "hf", tmp_path / "a.gguf")
    convert(tmp_path / "a.gguf", tmp_path / "b.gguf", dtype="f16")
    convert(tmp_path / "b.gguf", tmp_path / "folder", "llmlab")
    a, b = read_gguf(tmp_path / "a.gguf").metadata, read_gguf(tmp_path / "b.gguf").metadata
    assert {k: v for k, v in a.items() if k.startswith("tokenizer.")} == {
        k: v for k, v in b.items() if k.startswith("tokenizer.")
    }
    assert load_tokenizer(tmp_path / "folder").encode(TEXTS[1]) == tokenizer.encode(TEXTS[1])
    cfg = json.loads((tmp_path / "folder" / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == CHAT_TEMPLATE


def test_sharded_hf_checkpoint_and_f16_folder(tmp_path):
    hf = HF_MODELS["gpt2-untied"]()
    hf.save_pretrained(tmp_path / "hf", max_shard_size="30KB")
    assert (tmp_path / "hf" / "model.safetensors.index.json").is_file()
    r = convert(tmp_path / "hf", tmp_path / "half", "hf", "f16", with_tokenizer=False)
    assert not r.tokenizer
    half = AutoModelForCausalLM.from_pretrained(tmp_path / "half")
    assert half.transformer.h[0].attn.c_attn.weight.dtype == torch.float16
    x = torch.randint(0, VOCAB, (1, 8))
    torch.testing.assert_close(logits(half.float(), x), logits(hf, x), atol=1e-2, rtol=0)
