"""The output-folder policy for `llmlab convert` and `llmlab merge` (llmlab.io.outputs): a user's folder survives
--overwrite, an output may not be, contain or lie inside an input, and an llmlab-made output is replaced."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import run_cli
from hub_fixtures import TEXT, adapter_run, logits, save_both

from llmlab.io import OUTPUT_MARKER
from llmlab.models import load_model
from llmlab.recipes.convert import convert


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory, llama, tokenizer):
    return save_both(llama, tokenizer, tmp_path_factory.mktemp("src") / "hf", "hf")


@pytest.fixture(scope="module")
def lora(tmp_path_factory, llama, tokenizer):
    root = tmp_path_factory.mktemp("lora")
    base = save_both(llama, tokenizer, root / "base", "llmlab")
    run, tuned = adapter_run(root, llama, str(base), tokenizer)
    return base, run, tuned


def user_folder(path):
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("four years of work")
    return path


def assert_one_line_error(code, err, *needles):
    assert code == 2 and err.startswith("llmlab: error:") and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_a_users_folder_survives_overwrite(tmp_path, hf_dir, lora, capsys) -> None:
    thesis = user_folder(tmp_path / "thesis")
    code, _, err = run_cli(["convert", "--from", str(hf_dir), "--to", str(thesis), "--overwrite"], capsys)
    assert_one_line_error(code, err, "llmlab did not create")
    _, run, _ = lora
    code, _, err = run_cli(["merge", "--adapter", str(run / "adapter"), "--out", str(thesis), "--overwrite"], capsys)
    assert_one_line_error(code, err, "llmlab did not create")
    assert (thesis / "thesis.tex").read_text() == "four years of work"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis"]  # no temporary folder left either


def test_an_output_that_is_contains_or_lies_inside_an_input_is_refused(tmp_path, hf_dir, lora, capsys) -> None:
    for dst in (hf_dir, hf_dir.parent, hf_dir / "sub", hf_dir / "m.gguf"):
        code, _, err = run_cli(["convert", "--from", str(hf_dir), "--to", str(dst), "--overwrite"], capsys)
        assert_one_line_error(code, err, "would overwrite the input")
    assert sorted(p.name for p in hf_dir.parent.iterdir()) == ["hf"]
    base, run, _ = lora
    for dst in (run, run / "merged", base, base.parent):  # the adapter's run folder and its base are inputs too
        code, _, err = run_cli(["merge", "--adapter", str(run / "adapter"), "--out", str(dst), "--overwrite"], capsys)
        assert_one_line_error(code, err, "would overwrite the input")
    assert not (run / "merged").exists()


def test_an_llmlab_output_is_replaced_only_with_overwrite(tmp_path, hf_dir, lora, tokenizer, capsys) -> None:
    out = tmp_path / "out"
    convert(hf_dir, out)
    assert (out / OUTPUT_MARKER).is_file()
    (out / "stale.txt").write_text("old")
    code, _, err = run_cli(["convert", "--from", str(hf_dir), "--to", str(out)], capsys)
    assert_one_line_error(code, err, "--overwrite")
    code, _, err = run_cli(
        ["convert", "--from", str(hf_dir), "--to", str(out), "--overwrite", "--format", "hf"], capsys
    )
    assert code == 0, err
    assert (out / "config.json").is_file() and not (out / "stale.txt").exists() and (out / OUTPUT_MARKER).is_file()

    _, run, tuned = lora
    merged = tmp_path / "merged"
    for extra in ([], ["--overwrite"]):  # the second run replaces the first merge's output
        code, _, err = run_cli(["merge", "--adapter", str(run / "adapter"), "--out", str(merged), *extra], capsys)
        assert code == 0, err
    ids = tokenizer.encode(TEXT)
    torch.testing.assert_close(logits(load_model(merged), ids), logits(tuned, ids), atol=1e-5, rtol=1e-5)
    code, _, err = run_cli(["merge", "--adapter", str(run / "adapter"), "--out", str(merged)], capsys)
    assert_one_line_error(code, err, "--overwrite")


def test_gguf_output_replaces_only_a_gguf_file(tmp_path, hf_dir, capsys) -> None:
    gguf = tmp_path / "m.gguf"
    convert(hf_dir, gguf)
    assert gguf.read_bytes()[:4] == b"GGUF"
    code, _, err = run_cli(["convert", "--from", str(hf_dir), "--to", str(gguf)], capsys)
    assert_one_line_error(code, err, "--overwrite")
    code, _, err = run_cli(
        ["convert", "--from", str(hf_dir), "--to", str(gguf), "--overwrite", "--dtype", "f16"], capsys
    )
    assert code == 0, err
    notes = tmp_path / "notes.gguf"
    notes.write_text("not a model")
    code, _, err = run_cli(["convert", "--from", str(hf_dir), "--to", str(notes), "--overwrite"], capsys)
    assert_one_line_error(code, err, "is not a GGUF file")
    assert notes.read_text() == "not a model"
    code, _, err = run_cli(["convert", "--from", str(gguf), "--to", str(gguf), "--overwrite"], capsys)
    assert_one_line_error(code, err, "would overwrite the input")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.gguf", "notes.gguf"]
