"""`llmlab generate` on a tiny saved checkpoint (random weights, byte-level BPE tokenizer)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from llmlab.cli.main import main
from llmlab.models.gpt import GPT, GPTConfig
from llmlab.tokenizers import train_tokenizer_from_iterator

CORPUS = ["ROMEO: But soft, what light through yonder window breaks? 你好世界 " * 10]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    tok = train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2, n_embd=32))
    model.save_pretrained(d)
    tok.save(d)
    return d


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_streams_text_reproducibly(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["generate", "--checkpoint", str(checkpoint), "--prompt", "ROMEO:", "--max-new-tokens", "20", "--seed", "1"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert out.startswith("ROMEO:") and len(out) > len("ROMEO:\n")
    code2, out2, _ = run_cli(args + ["--no-stream"], capsys)
    assert code2 == 0 and out2 == out  # same seed, same text, streamed or not
    code3, out3, _ = run_cli(args + ["--no-cache"], capsys)
    assert code3 == 0 and out3 == out  # the KV cache does not change the sample


def test_generate_empty_prompt_samples_and_long_prompt(checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run_cli(
        ["generate", "-c", str(checkpoint), "-n", "5", "--num-samples", "2", "--temperature", "0"], capsys
    )
    assert code == 0, err
    assert out.count("---------------") == 1
    long_prompt = "ROMEO: " * 40
    code, out, err = run_cli(
        ["generate", "-c", str(checkpoint), "-p", long_prompt, "-n", "3", "--top-p", "0.9"], capsys
    )
    assert code == 0
    assert "warning" in err and "context" in err
    assert out.startswith(long_prompt)


def test_generate_accepts_a_run_folder(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    shutil.copytree(checkpoint, run / "checkpoints" / "last")
    code, out, err = run_cli(["generate", "-c", str(run), "-p", "ROMEO", "-n", "4", "--seed", "0"], capsys)
    assert code == 0, err
    assert out.startswith("ROMEO")


def test_missing_checkpoint_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for args in (
        ["generate", "--checkpoint", str(tmp_path / "nope"), "--prompt", "hi"],
        ["generate", "--checkpoint", str(tmp_path), "--prompt", "hi"],  # exists but holds no model
    ):
        code, out, err = run_cli(args, capsys)
        assert code == 2
        assert err.startswith("llmlab: error:") and err.count("\n") == 1
        assert "Traceback" not in err
