"""Smoke test of the `llmlab peft-compare` harness on a tiny random Llama (2 steps), and its label scorer."""

from __future__ import annotations

import json

import pytest
import torch

from llmlab.recipes.peft_compare import CompareConfig, compare, render_table, score_labels


def test_score_labels_matches_label_log_likelihoods(tokenizer):
    from finetune_helpers import tiny_llama

    from llmlab.models.heads import label_log_likelihoods
    from llmlab.peft import PromptConfig, get_peft_model

    prompts = [tokenizer.encode(t) for t in ["great movie", "awful film loved", "red apple"]]
    multi = [tokenizer.encode(" positive"), tokenizer.encode(" negative"), [5, 6, 7]]
    single = [[11], [12]]
    prompt_tuned = get_peft_model(tiny_llama(tokenizer.vocab_size).eval(), PromptConfig(num_virtual_tokens=3))
    for model in (tiny_llama(tokenizer.vocab_size).eval(), prompt_tuned):  # the head runs on gathered positions
        for labels in (multi, single):
            got = score_labels(model, prompts, labels, batch_size=4)
            want = torch.stack([label_log_likelihoods(model, p, labels) for p in prompts])
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


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
