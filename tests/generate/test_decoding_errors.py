"""Bad decoding input is one line, checked before the model loads; silent acceptance is gone (issue 9).

`SamplingConfig.validate` rules, then the CLI as a user runs it (subprocesses: exit status and stderr):
sampling options and devices fail before loading (a missing checkpoint would otherwise be the error),
`--stop ''` is an error, piped `chat` survives non-UTF-8 lines and exits 1 when a message failed, dropped
turns are noted once, and characters outside a char tokenizer's vocabulary are named in a warning.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_gpt

from llmlab.config.sampling import resolve_sampling
from llmlab.generate import SamplingConfig, generate
from llmlab.tokenizers import train_tokenizer_from_iterator

REPO = Path(__file__).resolve().parents[2]
MISSING = "/nonexistent/checkpoint"


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"temperature": math.nan}, "temperature (--temperature)"),
        ({"temperature": -0.5}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"top_p": 0.0}, "top_p (--top-p)"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_p": math.nan}, "top_p"),
        ({"top_k": -1}, "top_k (--top-k)"),
        ({"min_p": 1.5}, "min_p (--min-p)"),
        ({"repetition_penalty": 0.0}, "repetition_penalty (--repetition-penalty)"),
        ({"repetition_penalty": math.nan}, "repetition_penalty"),
        ({"frequency_penalty": math.nan}, "frequency_penalty"),
        ({"stop": ("",)}, "stop (--stop)"),
        ({"max_new_tokens": -1}, "max_new_tokens (--max-new-tokens)"),
        ({"num_beams": 0}, "num_beams (--num-beams)"),
        ({"early_stopping": "sometimes"}, "early_stopping"),
        ({"length_penalty": math.nan}, "length_penalty"),
    ],
)
def test_validate_names_the_option_in_one_line(changes: dict, names: str) -> None:
    with pytest.raises(ValueError) as info:
        SamplingConfig(**changes).validate()
    message = str(info.value)
    assert names in message and "\n" not in message


def test_defaults_are_valid_and_keywords_override_the_config() -> None:
    assert SamplingConfig().validate() == SamplingConfig()
    base = SamplingConfig(temperature=0.5, top_k=3)
    config = resolve_sampling(base, {"temperature": 0.0, "stop": "\n"}, max_new_tokens=7)
    assert (config.temperature, config.top_k, config.stop, config.max_new_tokens) == (0.0, 3, ("\n",), 7)
    with pytest.raises(ValueError, match="unknown sampling option"):
        resolve_sampling(None, {"temprature": 0.1})


def test_decoding_functions_take_the_config() -> None:
    model = tiny_gpt(0, vocab_size=40, n_layer=1, n_embd=16)
    ids = torch.tensor([[1, 2, 3]])
    config = SamplingConfig(max_new_tokens=5, temperature=0)
    assert torch.equal(generate(model, ids, sampling=config), generate(model, ids, 5, temperature=0))
    with pytest.raises(ValueError, match="top_p"):
        generate(model, ids, sampling=config.replace(top_p=0.0))


# ----------------------------------------------------------------------------------------------- the CLI


def test_cli_options_are_generated_from_the_config(capsys: pytest.CaptureFixture) -> None:
    """Every SamplingConfig field is an option of `generate`, the chat subset of `chat`, with one flag each."""
    import dataclasses

    from llmlab.cli.main import main
    from llmlab.config.sampling import CHAT_OPTIONS, GENERATE_OPTIONS

    fields = {f.name: f.metadata["flag"].split("/")[0] for f in dataclasses.fields(SamplingConfig)}
    assert set(GENERATE_OPTIONS) == set(fields) and set(CHAT_OPTIONS) < set(fields)
    for command, names in (("generate", GENERATE_OPTIONS), ("chat", CHAT_OPTIONS)):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        shown = capsys.readouterr().out.replace("│", " ")
        for name, flag in fields.items():
            assert (flag[:16] in shown) == (name in names), (command, flag)


def llmlab(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("LLMLAB_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "llmlab", *args], input=stdin, capture_output=True, cwd=REPO, env=env, timeout=300
    )


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error: "), err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "--temperature", "nan"], "temperature"),
        (["generate", "--top-p", "0"], "top_p"),
        (["generate", "--repetition-penalty", "0"], "repetition_penalty"),
        (["generate", "--stop", ""], "stop"),
        (["generate", "--device", "xyz"], "unknown device 'xyz'"),
        (["chat", "--temperature", "nan"], "temperature"),
        (["chat", "--min-p", "2"], "min_p"),
        (["chat", "--device", "xyz"], "unknown device 'xyz'"),
        (["chat", "--template", "nosuch"], "unknown chat template"),
    ],
)
def test_bad_options_fail_before_the_model_loads(args: list[str], expected: str) -> None:
    """With a checkpoint that does not exist, the option is still the error: it was checked first."""
    line = one_error_line(llmlab(*args, "--checkpoint", MISSING))
    assert expected in line and "checkpoint" not in line.replace("--checkpoint", "")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_cuda_on_a_cpu_only_torch_is_one_line() -> None:
    line = one_error_line(llmlab("generate", "--device", "cuda", "--checkpoint", MISSING))
    assert "not available" in line and "cpu" in line
    line = one_error_line(llmlab("eval", "perplexity", "-c", MISSING, "-f", __file__, "--device", "cuda"))
    assert "not available" in line


@pytest.fixture(scope="module")
def chat_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT with a char tokenizer that knows only a few letters (and ChatML's markers as specials)."""
    d = tmp_path_factory.mktemp("chat_ckpt")
    specials = {"pad": "<|pad|>", "bos": "<|im_start|>", "eos": "<|im_end|>", "unk": "<|endoftext|>"}
    corpus = ["hello world abc\nsystem user assistant"]
    tok = train_tokenizer_from_iterator("char", corpus, vocab_size=100, special_tokens=specials)
    tiny_gpt(0, vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_embd=16).save_pretrained(d)
    tok.save(d)
    return d


def test_piped_chat_skips_non_utf8_lines_and_exits_1(chat_checkpoint: Path) -> None:
    args = ("chat", "-c", str(chat_checkpoint), "--template", "chatml", "-t", "0", "-n", "3")
    proc = llmlab(*args, stdin=b"hello\n\xff\xfe bad\nworld\n")
    err = proc.stderr.decode()
    assert proc.returncode == 1, err
    assert len(proc.stdout.decode().splitlines()) == 2  # the two good lines got their replies
    errors = [line for line in err.splitlines() if line.startswith("llmlab: error:")]
    assert len(errors) == 1 and "line 2" in errors[0] and "UTF-8" in errors[0]
    assert "Traceback" not in err
    ok = llmlab(*args, stdin=b"hello\nworld\n")
    assert ok.returncode == 0, ok.stderr.decode()


def test_piped_chat_notes_dropped_turns_once(chat_checkpoint: Path) -> None:
    args = ("chat", "-c", str(chat_checkpoint), "--template", "chatml", "-t", "0", "-n", "3", "--context-tokens", "60")
    proc = llmlab(*args, stdin=b"hello world\n" * 6)
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    assert len(proc.stdout.decode().splitlines()) == 6
    assert err.count("oldest turns are left out") == 1, err


def test_characters_outside_a_char_vocabulary_are_named(chat_checkpoint: Path) -> None:
    proc = llmlab("generate", "-c", str(chat_checkpoint), "-p", "hello QZ", "-n", "2", "-t", "0")
    err = proc.stderr.decode()
    assert proc.returncode == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("llmlab: warning:")]
    assert len(warnings) == 1 and "'Q'" in warnings[0] and "'Z'" in warnings[0], err
    quiet = llmlab("generate", "-c", str(chat_checkpoint), "-p", "hello", "-n", "2", "-t", "0")
    assert "warning" not in quiet.stderr.decode()


def test_eval_non_utf8_file_is_one_line_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("café au lait".encode("latin-1"))
    line = one_error_line(llmlab("eval", "perplexity", "-c", MISSING, "-f", str(bad)))
    assert str(bad) in line and "UTF-8" in line
