"""Smoke test of the `llmlab peft-compare` harness on a tiny random Llama (2 steps), and its label accuracy."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from llmlab.recipes.peft_compare import CompareConfig, compare, held_out_accuracy
from llmlab.recipes.peft_compare_report import render_table


def _unpadded_label_scores(model, prompt: list[int], labels: list[list[int]]) -> torch.Tensor:
    """log p(label | prompt) from one unpadded forward per label (an independent reference)."""
    out = []
    for lab in labels:
        logp = torch.log_softmax(model(torch.tensor([prompt + lab])).logits[0].float(), dim=-1)  # (T, V)
        out.append(sum(float(logp[len(prompt) + k - 1, tok]) for k, tok in enumerate(lab)))
    return torch.tensor(out)


def test_held_out_accuracy_scores_labels_after_the_prompt(tokenizer):
    from finetune_helpers import tiny_llama

    from llmlab.peft import PromptConfig, get_peft_model

    labels = ["positive", "negative plus"]  # label words of different token lengths
    label_ids = [tokenizer.encode(lab) for lab in labels]
    texts = ["great movie", "awful film loved", "red apple", "so so", "meh", "the best day"]
    examples = [
        SimpleNamespace(input_ids=tokenizer.encode(t) + label_ids[i % 2], prompt_len=len(tokenizer.encode(t)), line=i)
        for i, t in enumerate(texts)
    ]
    prompt_tuned = get_peft_model(tiny_llama(tokenizer.vocab_size).eval(), PromptConfig(num_virtual_tokens=3))
    for model in (tiny_llama(tokenizer.vocab_size).eval(), prompt_tuned):
        with torch.no_grad():
            preds = [
                int(_unpadded_label_scores(model, e.input_ids[: e.prompt_len], label_ids).argmax()) for e in examples
            ]
        want = sum(int(p == i % 2) for i, p in enumerate(preds)) / len(examples)
        assert held_out_accuracy(model, tokenizer, examples, labels) == pytest.approx(want)
    bad = SimpleNamespace(input_ids=tokenizer.encode("x") + tokenizer.encode("maybe"), prompt_len=1, line=7)
    with pytest.raises(ValueError, match="example 7: its response does not start with one of the labels"):
        held_out_accuracy(model, tokenizer, [bad], labels)


def test_compare_smoke_runs_resumes_and_tabulates(tmp_path, llama_dir):
    cfg = CompareConfig(
        tasks=["en"],
        methods=["lora", "prompt"],
        steps=2,
        batch_size=2,
        train_size=8,
        test_size=8,
        base=str(llama_dir),
        precision="fp32",
        max_length=256,
    )
    out = tmp_path / "cmp"
    page = tmp_path / "peft.md"
    page.write_text("# PEFT\n<!-- peft-compare:begin -->\nold\n<!-- peft-compare:end -->\nafter\n")
    runs = compare(cfg, out, say=lambda m: None, in_process=True, doc=page)
    assert [(r["task"], r["method"]) for r in runs] == [("en", "zero-shot"), ("en", "lora"), ("en", "prompt")]
    for r in runs:
        assert 0.0 <= r["test_accuracy"] <= 1.0
    tuned = {r["method"]: r for r in runs[1:]}
    assert 0 < tuned["prompt"]["trainable_pct"] < tuned["lora"]["trainable_pct"] < 100
    assert all(r["peak_rss_bytes"] > 0 and r["steps"] == 2 for r in tuned.values())
    saved = json.loads((out / "results.json").read_text())["runs"]
    assert len(saved) == 3
    table = (out / "table.md").read_text()
    assert "| majority class |" in table and "| lora |" in table and "| zero-shot (untuned) |" in table
    assert (out / "scatter.png").stat().st_size > 1000
    assert (
        page.read_text() == f"# PEFT\n<!-- peft-compare:begin -->\n{table.rstrip()}\n<!-- peft-compare:end -->\nafter\n"
    )

    # same settings: everything is skipped; a new method runs in a child process and is appended
    said: list[str] = []
    runs2 = compare(CompareConfig(**{**cfg.__dict__, "methods": ["lora", "ia3"]}), out, say=said.append)
    assert any("lora: done already" in s for s in said)
    assert [r["method"] for r in runs2] == ["zero-shot", "lora", "prompt", "ia3"]
    assert runs2[3]["trainable_params"] > 0


def test_compare_rejects_unknown_method(tmp_path):
    with pytest.raises(ValueError, match="unknown method 'dora'"):
        compare(CompareConfig(methods=["dora"]), tmp_path)
    (tmp_path / "page.md").write_text("no markers\n")
    with pytest.raises(ValueError, match="no <!-- peft-compare:begin -->"):
        compare(CompareConfig(methods=["lora"]), tmp_path / "out", doc=tmp_path / "page.md")
    assert "majority class" in render_table(
        [{"task": "en", "method": "zero-shot", "test_accuracy": 0.6, "test_size": 8, "train_size": 8}]
    )
