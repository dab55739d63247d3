"""`llmlab merge` loads its base through the hub like every verb: a Hugging Face base without tokenizer.json is
fine (the adapter run's tokenizer is used), and a run folder may be passed as --adapter."""

from __future__ import annotations

import torch
from cli_helpers import run_cli
from hub_fixtures import TEXT, adapter_run, logits, save_both

from llmlab.models import load_model
from llmlab.recipes.merge import merge
from llmlab.tokenizers import load_tokenizer


def test_hf_base_without_tokenizer_uses_the_runs_tokenizer(tmp_path, tokenizer, llama, capsys) -> None:
    hf_base = save_both(llama, tokenizer, tmp_path / "hf-base", "hf", with_tokenizer=False)
    run, tuned = adapter_run(tmp_path, llama, "recorded/elsewhere", tokenizer)  # --base replaces the record
    out = tmp_path / "merged-hf"
    args = ["merge", "--base", str(hf_base), "--adapter", str(run / "adapter"), "--out", str(out), "--format", "hf"]
    code, printed, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"into {hf_base}" in printed
    ids = tokenizer.encode(TEXT)
    torch.testing.assert_close(logits(load_model(out), ids), logits(tuned, ids), atol=1e-5, rtol=1e-5)
    assert load_tokenizer(out).encode(TEXT) == ids  # the run's tokenizer went along


def test_run_folder_as_adapter_and_weights_only_without_any_tokenizer(tmp_path, tokenizer, llama) -> None:
    base = save_both(llama, tokenizer, tmp_path / "base", "llmlab", with_tokenizer=False)
    run, tuned = adapter_run(tmp_path, llama, str(base), tokenizer)
    (run / "tokenizer.json").unlink()
    (run / "tokenizer_config.json").unlink(missing_ok=True)
    report = merge(run, tmp_path / "merged")  # the run folder: its adapter/ is merged
    assert report.merged_layers > 0 and any("only the weights" in note for note in report.notes)
    assert not (tmp_path / "merged" / "tokenizer.json").exists()
    ids = tokenizer.encode(TEXT)
    torch.testing.assert_close(logits(load_model(tmp_path / "merged"), ids), logits(tuned, ids), atol=1e-5, rtol=1e-5)


def test_not_an_adapter_is_named(tmp_path, tokenizer, llama, capsys) -> None:
    base = save_both(llama, tokenizer, tmp_path / "base", "llmlab")
    code, _, err = run_cli(["merge", "--adapter", str(base), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "adapter_config.json not found" in err
    code, _, err = run_cli(["merge", "--adapter", str(tmp_path / "nope"), "--out", str(tmp_path / "m")], capsys)
    assert code == 2 and "adapter folder not found" in err
    assert not (tmp_path / "m").exists()
