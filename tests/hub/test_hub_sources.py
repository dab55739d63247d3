"""`resolve_source`: what each kind of path is (without loading), and metadata paths (an adapter's base, a run's
data.dir) resolved relative to the folder holding the metadata first, then the working directory, reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import tiny_models
import torch

import llmlab.models.smollm2
from llmlab.hub import load_for_inference, resolve_source
from llmlab.models import save_hf, save_llmlab
from llmlab.models.llama import Llama
from llmlab.peft import LoraConfig, get_peft_model, save_adapter
from llmlab.tokenizers import train_tokenizer_from_iterator

TEXT = "Hello world 你好"


@pytest.fixture(scope="module")
def tokenizer():
    corpus = ["Hello world, the quick brown fox jumps. 你好，世界。 123 456\n" * 40]
    return train_tokenizer_from_iterator("bpe", corpus, vocab_size=300, special_tokens={"eos": "<|endoftext|>"})


def tiny_llama(vocab_size: int, seed: int) -> Llama:
    """`llama-tiny` with one layer, context 64, untied embeddings."""
    fields = {"num_hidden_layers": 1, "head_dim": 8, "max_position_embeddings": 64, "tie_word_embeddings": False}
    return tiny_models.tiny_llama(seed, vocab_size=vocab_size, **fields)


def checkpoint(folder: Path, model: Llama, tokenizer, fmt: str = "llmlab", with_tokenizer: bool = True) -> Path:
    (save_hf if fmt == "hf" else save_llmlab)(model, folder)
    if with_tokenizer:
        tokenizer.save(folder)
    return folder


def lora_run(run: Path, base: Llama, recorded: str, tokenizer) -> Path:
    tuned = get_peft_model(Llama(base.config).eval(), LoraConfig(r=2, target_modules="all-linear"))
    tuned.load_state_dict(base.state_dict(), strict=False)
    save_adapter(tuned, run / "adapter", base_model_name_or_path=recorded)
    tokenizer.save(run)
    (run / "config.yaml").write_text("method: lora\n")
    return run


def test_each_kind_of_path(tmp_path, tokenizer, monkeypatch) -> None:
    model = tiny_llama(tokenizer.vocab_size, 0)
    ll = checkpoint(tmp_path / "ll", model, tokenizer)
    hf = checkpoint(tmp_path / "hf", model, tokenizer, "hf")
    checkpoint(tmp_path / "pre" / "checkpoints" / "last", model, tokenizer)
    (tmp_path / "pre" / "config.yaml").write_text("data:\n  dir: nowhere\n")
    checkpoint(tmp_path / "full" / "model", model, tokenizer)
    run = lora_run(tmp_path / "sft", model, str(ll), tokenizer)
    gguf = tmp_path / "g" / "m.gguf"
    from llmlab.recipes.convert import convert

    convert(hf, gguf)
    monkeypatch.setattr(llmlab.models.smollm2, "smollm2_gguf_path", lambda: gguf)
    last = tmp_path / "pre" / "checkpoints" / "last"
    expected = {
        None: ("default", "gguf", gguf, None),
        Path(llmlab.models.smollm2.DEFAULT_MODEL_NAME): ("default", "gguf", gguf, None),
        gguf: ("gguf", "gguf", gguf, None),
        gguf.parent: ("gguf", "gguf", gguf, None),
        ll: ("checkpoint", "llmlab", ll, ll / "tokenizer.json"),
        hf / "config.json": ("hf", "hf", hf, hf / "tokenizer.json"),
        tmp_path / "pre": ("pretrain-run", "llmlab", last, last / "tokenizer.json"),
        tmp_path / "full": ("finetune-run", "llmlab", tmp_path / "full/model", tmp_path / "full/model/tokenizer.json"),
        run: ("adapter", "llmlab", ll, run / "tokenizer.json"),
        run / "adapter": ("adapter", "llmlab", ll, run / "tokenizer.json"),
    }  # fmt: skip
    for path, (kind, fmt, weights, tok) in expected.items():
        s = resolve_source(path)
        assert (s.kind, s.format, s.weights, s.tokenizer_file) == (kind, fmt, weights, tok), path
    adapter = resolve_source(run)
    assert adapter.adapter_dir == run / "adapter" and adapter.run_dir == run and adapter.base.weights == ll
    assert {run, run / "adapter", ll} <= set(adapter.inputs())  # an output may touch none of them
    with pytest.raises(ValueError, match="not an adapter"):
        resolve_source(ll, base=hf)


def test_base_is_found_beside_the_adapter_first_and_reported(tmp_path, tokenizer, monkeypatch) -> None:
    """Two different models named 'base': the one relative to the run folder wins over the working directory's."""
    near, far = tiny_llama(tokenizer.vocab_size, 1), tiny_llama(tokenizer.vocab_size, 2)
    project = tmp_path / "project"
    run = lora_run(project / "sft", near, "base", tokenizer)
    checkpoint(run / "base", near, tokenizer)
    checkpoint(tmp_path / "base", far, tokenizer)
    monkeypatch.chdir(tmp_path)
    loaded = load_for_inference(run)
    assert loaded.info.base.weights == run / "base"
    assert loaded.note is not None and "relative to the run folder" in loaded.note and "'base'" in loaded.note
    assert str(run / "base") in loaded.source
    ids = torch.tensor([tokenizer.encode(TEXT)])
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(ids).logits, near(ids).logits)  # LoRA B = 0: the base's logits

    shutil.rmtree(run / "base")  # now only the working directory has it: used, and said so
    loaded = load_for_inference(run)
    assert loaded.info.base.weights == tmp_path / "base" and "relative to the working directory" in loaded.note
    monkeypatch.chdir(project)
    with pytest.raises(FileNotFoundError, match="base_model_name_or_path"):
        resolve_source(run)
    # an absolute recorded path is used as is, and said so
    cfg_file = run / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "base_model_name_or_path": str(tmp_path / "base")}))
    assert "absolute path" in resolve_source(run).note


def test_run_data_dir_is_relative_to_the_run_first(tmp_path, tokenizer, monkeypatch) -> None:
    model = tiny_llama(tokenizer.vocab_size, 0)
    run = tmp_path / "runs" / "r"
    checkpoint(run / "checkpoints" / "last", model, tokenizer, with_tokenizer=False)
    (run / "config.yaml").write_text("data:\n  dir: data\n")
    tokenizer.save(run / "data")  # relative to the run
    other = train_tokenizer_from_iterator("char", ["abc"], vocab_size=10)
    other.save(tmp_path / "data")  # relative to the working directory: a different tokenizer
    monkeypatch.chdir(tmp_path)
    s = resolve_source(run)
    assert s.tokenizer_file == run / "data" / "tokenizer.json" and "relative to the run folder" in s.note
    shutil.rmtree(run / "data")
    s = resolve_source(run)
    assert s.tokenizer_file == tmp_path / "data" / "tokenizer.json" and "working directory" in s.note


def test_tokenizer_optional_for_weights(tmp_path, tokenizer) -> None:
    hf = checkpoint(tmp_path / "hf", tiny_llama(tokenizer.vocab_size, 0), tokenizer, "hf", with_tokenizer=False)
    with pytest.raises(FileNotFoundError, match="no tokenizer.json in the Hugging Face folder"):
        load_for_inference(hf)
    loaded = load_for_inference(hf, require_tokenizer=False)
    assert loaded.tokenizer is None and loaded.family == "llama" and loaded.info.kind == "hf"
