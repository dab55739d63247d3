"""`llmlab convert --from` accepts every source the loader knows: pretrain runs, finetune runs (full or with a
LoRA adapter, merged on the way), adapter folders; adapters that cannot be merged are refused in one line."""

from __future__ import annotations

import torch
from cli_helpers import run_cli
from hub_fixtures import TEXT, adapter_run, logits, pretrain_run, save_both

from llmlab.models import load_model
from llmlab.models.gpt import GPT
from llmlab.recipes.convert import convert
from llmlab.tokenizers import load_tokenizer


def test_pretrain_run_folder_converts_with_the_runs_tokenizer(tmp_path, tokenizer, monkeypatch, capsys) -> None:
    """The run's config.yaml names its data folder relative to the run; the CLI says which folder it used."""
    tokenizer.save(tmp_path / "data")
    run, gpt = pretrain_run(tmp_path, tokenizer, "../data")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the relative data.dir is not found from here: the run folder decides
    code, out, err = run_cli(["convert", "--from", str(run), "--to", str(tmp_path / "hf"), "--format", "hf"], capsys)
    assert code == 0, err
    assert f"from llmlab {run / 'checkpoints' / 'last'}" in out
    assert "data.dir" in out and "relative to the run folder" in out and "(tokenizer: yes" in out
    back = load_model(tmp_path / "hf")
    assert isinstance(back, GPT)
    ids = tokenizer.encode(TEXT)
    torch.testing.assert_close(logits(back, ids), logits(gpt, ids))
    assert load_tokenizer(tmp_path / "hf").encode(TEXT) == ids


def test_finetune_run_with_lora_adapter_converts_the_merged_model(tmp_path, tokenizer, llama, capsys) -> None:
    base = save_both(llama, tokenizer, tmp_path / "base", "llmlab")
    run, tuned = adapter_run(tmp_path, llama, str(base), tokenizer)
    ids = tokenizer.encode(TEXT)
    for src, dst in ((run, tmp_path / "from-run.gguf"), (run / "adapter", tmp_path / "from-adapter")):
        code, out, err = run_cli(["convert", "--from", str(src), "--to", str(dst)], capsys)
        assert code == 0, err
        assert "merged the adapter" in out and "into its base" in out
        torch.testing.assert_close(logits(load_model(dst), ids), logits(tuned, ids), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(logits(llama, ids), logits(tuned, ids), atol=1e-3)  # the adapter mattered


def test_full_finetune_run_converts_its_model_folder(tmp_path, tokenizer, llama) -> None:
    run = tmp_path / "full"
    save_both(llama, tokenizer, run / "model", "llmlab")
    (run / "config.yaml").write_text("method: full\n")
    report = convert(run, tmp_path / "out", "hf")
    assert report.source == str(run / "model") and report.tokenizer
    ids = tokenizer.encode(TEXT)
    torch.testing.assert_close(logits(load_model(tmp_path / "out"), ids), logits(llama, ids))


def test_prefix_adapter_is_refused_in_one_line(tmp_path, tokenizer, llama, capsys) -> None:
    base = save_both(llama, tokenizer, tmp_path / "base", "llmlab")
    run, _ = adapter_run(tmp_path, llama, str(base), tokenizer, method="prefix")
    code, _, err = run_cli(["convert", "--from", str(run), "--to", str(tmp_path / "out")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "PREFIX_TUNING adapter; only LoRA, QLoRA and IA3 adapters can be merged" in err
    assert not (tmp_path / "out").exists()
