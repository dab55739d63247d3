"""`llmlab eval perplexity` on a tiny saved checkpoint (random weights, byte-level BPE tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli
from tiny_models import tiny_gpt

from llmlab.tokenizers import train_tokenizer_from_iterator


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    tok = train_tokenizer_from_iterator("bpe", ["ROMEO: But soft, what light through yonder window breaks? " * 10], 300)
    tiny_gpt(0, vocab_size=tok.vocab_size).save_pretrained(d)
    tok.save(d)
    return d


def test_eval_perplexity_cli(checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    text_file = tmp_path / "heldout.txt"
    text_file.write_text("ROMEO: what light through yonder window? 你好\n" * 4, encoding="utf-8")
    code, out, err = run_cli(
        ["eval", "perplexity", "-c", str(checkpoint), "--file", str(text_file), "--stride", "8", "--batch-size", "2"],
        capsys,
    )
    assert code == 0, err
    for label in ("tokens scored", "loss", "perplexity", "bits per char", "bits per byte"):
        assert label in out
    code, out, err = run_cli(["eval", "perplexity", "-c", str(checkpoint), "-f", str(text_file), "--json"], capsys)
    assert code == 0
    result = json.loads(out)
    assert result["perplexity"] > 1 and result["tokens_scored"] > 0
    code, _, err = run_cli(["eval", "perplexity", "-c", str(checkpoint), "-f", str(tmp_path / "missing.txt")], capsys)
    assert code == 2 and "not found" in err


def test_eval_missing_checkpoint_or_file_is_a_one_line_error(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    text_file = tmp_path / "t.txt"
    text_file.write_text("hello world", encoding="utf-8")
    for args in (
        ["eval", "perplexity", "--checkpoint", str(tmp_path / "nope"), "--file", str(text_file)],
        ["eval", "perplexity", "--checkpoint", str(checkpoint), "--file", str(text_file), "--stride", "999"],
    ):
        code, _, err = run_cli(args, capsys)
        assert code == 2 and err.startswith("llmlab: error:") and err.count("\n") == 1
