"""`load_for_inference` / `load_model_and_tokenizer` on every checkpoint kind, and `llmlab generate`'s default model.

Tiny random models (2 layers, width 32) saved as an llmlab folder, a `llmlab pretrain` run folder, a Hugging
Face folder and a GGUF file; each must load to the same logits and the same tokenizer. The SmolLM2 default is
exercised by pointing `smollm2_gguf_path` at a tiny GGUF (the real model is loaded in
tests/recipes/test_chat_session.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from tiny_models import tiny_gpt, tiny_llama

import llmlab.hub
import llmlab.models.smollm2
from llmlab.hub import DEFAULT_MODEL_NAME, load_for_inference, load_model_and_tokenizer
from llmlab.models import save_hf, save_llmlab
from llmlab.models.gpt import GPT
from llmlab.models.llama import Llama
from llmlab.recipes.convert import convert
from llmlab.tokenizers import train_tokenizer_from_iterator
from llmlab.tokenizers.chat import CHATML

CORPUS = ["Hello world, the quick brown fox jumps. 你好，世界。 123 456\n" * 40]
# pad first: it gets id 0, so a model whose logits are all equal picks <|im_end|> greedily.
SPECIALS = {"pad": "<|im_end|>", "unk": "<|unk|>", "bos": "<|im_start|>", "eos": "<|endoftext|>"}


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=320, special_tokens=SPECIALS)


@pytest.fixture(scope="module")
def llama(tokenizer) -> Llama:
    return tiny_llama(0, vocab_size=tokenizer.vocab_size, tie_word_embeddings=False)


def _save_tokenizer(tokenizer, directory: Path, template: str | None = CHATML) -> None:
    tokenizer.save(directory)
    if template is not None:
        sidecar = directory / "tokenizer_config.json"
        sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "chat_template": template}))


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, llama, tokenizer) -> Path:
    d = tmp_path_factory.mktemp("hf")
    save_hf(llama, d)
    _save_tokenizer(tokenizer, d)
    return d


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


def _check_same(loaded, reference, tokenizer, kind: type) -> None:
    assert isinstance(loaded.model, kind) and not loaded.model.training
    ids = tokenizer.encode("Hello world 你好")
    assert loaded.tokenizer.encode("Hello world 你好") == ids
    assert loaded.tokenizer.eos_id == tokenizer.eos_id
    torch.testing.assert_close(_logits(loaded.model, ids), _logits(reference, ids))


def test_llmlab_folder_and_hf_folder(tmp_path, llama, tokenizer, hf_dir) -> None:
    save_llmlab(llama, tmp_path / "ll")
    _save_tokenizer(tokenizer, tmp_path / "ll")
    for path in (tmp_path / "ll", hf_dir, hf_dir / "config.json"):
        loaded = load_for_inference(path)
        _check_same(loaded, llama, tokenizer, Llama)
        assert loaded.chat_template == CHATML
    model, tok = load_model_and_tokenizer(hf_dir)  # the tuple interface
    assert isinstance(model, Llama) and tok.vocab_size == tokenizer.vocab_size


def test_gguf_file_carries_tokenizer_and_template(tmp_path, llama, tokenizer, hf_dir) -> None:
    gguf = tmp_path / "tiny.gguf"
    convert(hf_dir, gguf)
    for path in (gguf, tmp_path):  # the file, or a folder holding exactly one .gguf
        loaded = load_for_inference(path)
        _check_same(loaded, llama, tokenizer, Llama)
        assert loaded.chat_template == CHATML


def test_run_folder_finds_tokenizer_in_data_dir(tmp_path, tokenizer) -> None:
    gpt = tiny_gpt(0, vocab_size=tokenizer.vocab_size)
    run = tmp_path / "run"
    gpt.save_pretrained(run / "checkpoints" / "last")
    tokenizer.save(tmp_path / "data")
    (run / "config.yaml").write_text(f"data:\n  dir: {tmp_path / 'data'}\n")
    loaded = load_for_inference(run)
    _check_same(loaded, gpt, tokenizer, GPT)
    assert loaded.chat_template is None  # a pretrained GPT has none: chat needs --template


def test_adapter_and_finetune_run_folders_load_base_plus_adapter(tmp_path, llama, tokenizer, hf_dir) -> None:
    """An adapter folder (or a `llmlab finetune` run holding adapter/) loads its base and the adapter, unmerged."""
    from llmlab.peft import LoraConfig, PrefixConfig, get_peft_model, save_adapter

    base_dir = tmp_path / "base"
    save_llmlab(llama, base_dir)
    _save_tokenizer(tokenizer, base_dir)
    ids = tokenizer.encode("Hello world 你好")
    for cfg in (
        LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False),
        PrefixConfig(prefix_init_std=1.0),
    ):
        tuned = get_peft_model(Llama(llama.config).eval(), cfg)
        tuned.load_state_dict(llama.state_dict(), strict=False)  # same base weights, random adapter
        assert not torch.allclose(_logits(tuned, ids), _logits(llama, ids), atol=1e-4)
        run = tmp_path / f"run-{cfg.peft_type}"
        save_adapter(tuned, run / "adapter", base_model_name_or_path=str(base_dir))
        _save_tokenizer(tokenizer, run, template="{{ messages[0]['content'] }}")  # the run's own template
        for path in (run, run / "adapter"):
            loaded = load_for_inference(path)
            torch.testing.assert_close(_logits(loaded.model, ids), _logits(tuned, ids))
            assert loaded.tokenizer.encode("Hello world 你好") == ids and not loaded.model.training
            assert loaded.chat_template == "{{ messages[0]['content'] }}"
            assert "adapter" in loaded.source
    (tmp_path / "full" / "model").mkdir(parents=True)  # a full fine-tuning run: run/model/ is the checkpoint
    save_llmlab(llama, tmp_path / "full" / "model")
    _save_tokenizer(tokenizer, tmp_path / "full" / "model")
    _check_same(load_for_inference(tmp_path / "full"), llama, tokenizer, Llama)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    with pytest.raises(ValueError, match="does not name its base model"):
        load_for_inference(broken)


def test_errors_name_the_problem(tmp_path, llama, tokenizer, hf_dir) -> None:
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_for_inference(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="model_config.json"):
        load_for_inference(tmp_path / "empty")
    no_tok = tmp_path / "no_tok"
    shutil.copytree(hf_dir, no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json"):
        load_for_inference(no_tok)
    small = tmp_path / "small"
    save_llmlab(tiny_llama(vocab_size=100), small)
    tokenizer.save(small)
    with pytest.raises(ValueError, match="tokenizer has"):
        load_for_inference(small)


@pytest.fixture
def tiny_default(tmp_path, monkeypatch, hf_dir) -> Path:
    """Make the 'SmolLM2' default a tiny GGUF whose greedy choice is always <|im_end|> (id 0) after the prompt."""
    gguf = tmp_path / "default.gguf"
    convert(hf_dir, gguf)
    monkeypatch.setattr(llmlab.models.smollm2, "smollm2_gguf_path", lambda: gguf)
    return gguf


def test_generate_defaults_to_smollm2_and_chat_mode(tiny_default, capsys) -> None:
    loaded = load_for_inference(None)
    assert loaded.source == DEFAULT_MODEL_NAME and isinstance(loaded.model, Llama)

    code, out, err = run_cli(["generate", "-p", "Hello", "-n", "5", "--temperature", "0"], capsys)
    assert code == 0, err
    assert out.startswith("Hello") and len(out) > len("Hello\n")

    # --chat: the prompt goes through the template and is not echoed; a model that always says <|im_end|>
    # (all-zero logits -> argmax id 0) gives an empty answer instead of n copies of the marker.
    original = llmlab.hub.load_for_inference

    def patched(path=None, device="cpu", **options):
        result = original(path, device, **options)
        with torch.no_grad():
            result.model.lm_head.weight.zero_()
        return result

    mp = pytest.MonkeyPatch()
    mp.setattr(llmlab.hub, "load_for_inference", patched)
    try:
        code, out, err = run_cli(["generate", "--chat", "-p", "Hello", "-n", "5", "--temperature", "0"], capsys)
        assert code == 0, err
        assert out == "\n"
        code, out, err = run_cli(["generate", "-p", "Hello", "-n", "3", "--temperature", "0"], capsys)
        assert code == 0 and out == "Hello" + "<|im_end|>" * 3 + "\n"  # plain mode stops at EOS only
    finally:
        mp.undo()
