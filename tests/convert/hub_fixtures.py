"""Tiny sources for the convert/merge tests (a uniquely named module: `tests/` has several conftest.py files):
a BPE tokenizer, a Llama saved as llmlab/HF folders, a `llmlab pretrain`-style run folder and LoRA/prefix
adapter runs, all built here in a second or two."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_models import tiny_gpt, tiny_llama

from llmlab.models import save_hf, save_llmlab
from llmlab.models.gpt import GPT
from llmlab.models.llama import Llama

CORPUS = ["Hello world, the quick brown fox jumps. 你好，世界。 123 456\n" * 40]
SPECIALS = {"pad": "<|im_end|>", "unk": "<|unk|>", "bos": "<|im_start|>", "eos": "<|endoftext|>"}
TEXT = "Hello world 你好"


def make_tokenizer():
    from llmlab.tokenizers import train_tokenizer_from_iterator

    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=320, special_tokens=SPECIALS)


def make_llama(vocab_size: int) -> Llama:
    """`llama-tiny`, untied, a larger init; `head_dim` set: an HF round trip fills it in, and the adapter
    fingerprint compares raw fields."""
    fields = {"head_dim": 8, "initializer_range": 0.2, "tie_word_embeddings": False}
    return tiny_llama(0, vocab_size=vocab_size, **fields)


def make_gpt(vocab_size: int) -> GPT:
    return tiny_gpt(0, vocab_size=vocab_size)


def logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits


def pretrain_run(root: Path, tokenizer, data_dir_value: str) -> tuple[Path, GPT]:
    """A run folder as `llmlab pretrain` writes it: config.yaml naming `data.dir`, checkpoints/last/."""
    gpt = make_gpt(tokenizer.vocab_size)
    run = root / "run"
    gpt.save_pretrained(run / "checkpoints" / "last")
    (run / "config.yaml").write_text(f"data:\n  dir: {data_dir_value}\n", encoding="utf-8")
    return run, gpt


def adapter_run(root: Path, base: Llama, base_recorded: str, tokenizer, method: str = "lora") -> tuple[Path, Llama]:
    """A `llmlab finetune`-style run: run/adapter/ (random, non-zero adapter), run/tokenizer.json, config.yaml."""
    from llmlab.peft import LoraConfig, PrefixConfig, get_peft_model, save_adapter

    cfg = LoraConfig(r=4, target_modules="all-linear", init_lora_weights=False)
    if method == "prefix":
        cfg = PrefixConfig(prefix_init_std=1.0)
    tuned = get_peft_model(Llama(base.config).eval(), cfg)
    tuned.load_state_dict(base.state_dict(), strict=False)  # the base weights, a random adapter
    run = root / f"run-{method}"
    save_adapter(tuned, run / "adapter", base_model_name_or_path=base_recorded)
    tokenizer.save(run)
    (run / "config.yaml").write_text("method: lora\n", encoding="utf-8")
    return run, tuned


def save_both(model: Llama, tokenizer, folder: Path, fmt: str, with_tokenizer: bool = True) -> Path:
    (save_hf if fmt == "hf" else save_llmlab)(model, folder)
    if with_tokenizer:
        tokenizer.save(folder)
    return folder
