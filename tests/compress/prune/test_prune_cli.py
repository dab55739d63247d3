"""`llmlab prune` end to end on a tiny Llama with a BPE tokenizer, and its one-line refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from tiny_models import tiny_llama

from llmlab.hub import load_for_inference
from llmlab.io import is_llmlab_output
from llmlab.models import save_llmlab

TEXT = "The quick brown fox jumps over the lazy dog. To be, or not to be, that is the question.\n" * 20
SPECIALS = {"pad": "<|im_end|>", "unk": "<|unk|>", "bos": "<|im_start|>", "eos": "<|endoftext|>"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from llmlab.tokenizers import train_tokenizer_from_iterator

    root = tmp_path_factory.mktemp("prune")
    tokenizer = train_tokenizer_from_iterator("bpe", [TEXT], 300, SPECIALS)
    model = tiny_llama(0, vocab_size=tokenizer.vocab_size, num_key_value_heads=2, initializer_range=0.2)
    save_llmlab(model, root / "model")
    tokenizer.save(root / "model")
    (root / "text.txt").write_text(TEXT, encoding="utf-8")
    return root / "model"


def _linear_weights(folder: Path) -> list[torch.Tensor]:
    model = load_for_inference(folder).model
    return [m.weight for name, m in model.named_modules() if isinstance(m, torch.nn.Linear) and ".layers." in name]


def test_wanda_in_stages_with_recovery_keeps_the_zeros_and_generates(model_dir: Path, tmp_path: Path, capsys) -> None:
    out, text = tmp_path / "wanda", model_dir.parent / "text.txt"
    args = ["prune", "--model", str(model_dir), "--method", "wanda", "--sparsity", "0.5", "--steps", "2",
            "--recover-steps", "2", "--data", str(text), "--calibration", str(text), "--calibration-samples", "2",
            "--calibration-length", "16", "--lr", "1e-2", "--out", str(out)]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "stage 2/2: sparsity 50.0%" in stdout and "recovery loss" in stdout
    assert is_llmlab_output(out) and (out / "tokenizer.json").is_file()
    for w in _linear_weights(out):  # trained for 4 steps at a high lr, yet half of every row is still zero
        assert bool(((w == 0).sum(1) == w.shape[1] // 2).all())
    report = json.loads((out / "pruning.json").read_text(encoding="utf-8"))
    assert len(report["stages"]) == 2 and report["stages"][1]["final_loss"] is not None
    code, stdout, err = run_cli(["generate", "--checkpoint", str(out), "-p", "The", "-n", "4", "-t", "0"], capsys)
    assert code == 0, err


def test_structured_shrinks_the_saved_model(model_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "small"
    args = ["prune", "--model", str(model_dir), "--method", "structured", "--heads", "2", "--neurons", "16",
            "--out", str(out)]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "heads 4 -> 2, key/value heads 2 -> 2, MLP neurons 64 -> 48" in stdout and "removed 2 head(s)" in stdout
    config = load_for_inference(out).model.config
    assert (config.num_attention_heads, config.intermediate_size, config.head_dim) == (2, 48, 8)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--method", "magnitude"], "--method magnitude needs --sparsity S"),
        (["--method", "magnitude", "--sparsity", "1.5"], "--sparsity 1.5 must be a fraction in [0, 1)"),
        (["--method", "2:4", "--steps", "2"], "--steps 1"),
        (["--method", "magnitude", "--sparsity", "0.5", "--recover-steps", "3"], "--recover-steps needs --data"),
        (
            ["--method", "magnitude", "--sparsity", "0.5", "--recover-steps", "3", "--data", "nope.txt"],
            "--data nope.txt",
        ),
        (["--method", "wanda", "--sparsity", "0.5", "--calibration", "nope"], "--calibration nope: no such file"),
        (["--method", "structured", "--heads", "1"], "choose one of [0, 2]"),
        (["--method", "magnitude", "--sparsity", "0.5", "--device", "tpu"], "tpu"),
    ],
)
def test_refusals_are_one_line_and_write_nothing(model_dir: Path, tmp_path: Path, capsys, extra, message) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(["prune", "--model", str(model_dir), "--out", str(out), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_foreign_output_folder_is_refused(model_dir: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me", encoding="utf-8")
    args = ["prune", "--model", str(model_dir), "--method", "magnitude", "--sparsity", "0.5", "--out",
            str(tmp_path / "mine"), "--overwrite"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (tmp_path / "mine" / "notes.txt").read_text(encoding="utf-8") == "keep me"
