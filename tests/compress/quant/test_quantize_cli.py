"""`llmlab quantize` end to end on a tiny checkpoint, and its one-line refusals (exit 2) before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from tiny_models import tiny_llama

from llmlab.compress.quant import Int4Linear, QuantEmbedding, is_quantized_folder
from llmlab.hub import load_for_inference, save_tokenizer
from llmlab.io import is_llmlab_output
from llmlab.models import save_llmlab
from llmlab.tokenizers import train_tokenizer_from_iterator
from llmlab.tokenizers.chat import CHATML

SPECIALS = {"pad": "<|pad|>", "unk": "<|unk|>", "bos": "<|im_start|>", "eos": "<|im_end|>"}
TEXT = "the quick brown fox jumps over the lazy dog, and the dog sleeps in the sun.\n" * 40


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tokenizer = train_tokenizer_from_iterator("bpe", [TEXT], 300, SPECIALS)
    folder = tmp_path_factory.mktemp("tiny") / "model"
    save_llmlab(tiny_llama(0, vocab_size=tokenizer.vocab_size, hidden_size=64, intermediate_size=128), folder)
    save_tokenizer(tokenizer, folder, CHATML)
    return folder


def test_quantize_writes_a_folder_every_verb_loads(tmp_path: Path, checkpoint: Path, capsys) -> None:
    corpus = tmp_path / "calib.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "q"
    options = {"--model": checkpoint, "--scheme": "gptq-int4", "--group-size": 32, "--calibration": corpus,
               "--calibration-samples": 4, "--calibration-tokens": 16, "--out": out}  # fmt: skip
    args = ["quantize", "--asymmetric", *(str(x) for pair in options.items() for x in pair)]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "to gptq-int4 (group 32, asymmetric, calibrated on 4 x 16 tokens" in stdout and str(out) in stdout
    assert is_quantized_folder(out) and is_llmlab_output(out) and (out / "tokenizer.json").is_file()
    loaded = load_for_inference(out)  # what generate / chat / serve / eval call
    assert isinstance(loaded.model.layers[0].mlp.up_proj, Int4Linear)
    assert isinstance(loaded.model.embed_tokens, QuantEmbedding) and loaded.tokenizer is not None
    assert loaded.chat_template == CHATML
    reference = load_for_inference(checkpoint).model
    ids = torch.tensor([loaded.tokenizer.encode("the lazy dog")])
    with torch.no_grad():
        err_rel = (loaded.model(ids).logits - reference(ids).logits).norm() / reference(ids).logits.norm()
    assert err_rel < 0.3
    code, stdout, err = run_cli(["generate", "--checkpoint", str(out), "--prompt", "the", "--max-new-tokens", "3"],
                                capsys)  # fmt: skip
    assert code == 0, err
    code, _, err = run_cli(args, capsys)  # an existing output needs --overwrite
    assert code == 2 and "--overwrite" in err
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--scheme", "int3"], "unknown quantization scheme 'int3'"),
        (["--scheme", "gptq-int4"], "gptq-int4 needs calibration data"),
        (["--scheme", "int4", "--group-size", "0"], "the group size must be a positive integer"),
        (["--scheme", "int4", "--group-size", "48"], "group size 48 does not divide the 64 input features of model."),
        (["--scheme", "int8", "--asymmetric"], "--asymmetric applies to int4 and gptq-int4 only"),
        (["--scheme", "gptq-int4", "--calibration", "no/such/file.txt"], "source not found: no/such/file.txt"),
        (["--scheme", "int8", "--model", "no/such/model"], "checkpoint not found: no/such/model"),
    ],
)
def test_bad_inputs_are_one_line_errors_and_write_nothing(
    tmp_path: Path, checkpoint: Path, capsys, extra: list[str], message: str
) -> None:
    out = tmp_path / "q"
    code, _, err = run_cli(["quantize", "--model", str(checkpoint), "--out", str(out), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_a_quantized_folder_is_not_quantized_again(tmp_path: Path, checkpoint: Path, capsys) -> None:
    first = tmp_path / "q8"
    assert run_cli(["quantize", "--model", str(checkpoint), "--scheme", "int8", "--out", str(first)], capsys)[0] == 0
    code, _, err = run_cli(
        ["quantize", "--model", str(first), "--scheme", "int4", "--out", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "is already quantized" in err


def test_keep_quantized_runs_a_q8_0_gguf_on_its_blocks(tmp_path: Path, checkpoint: Path, capsys) -> None:
    from llmlab.compress.quant import Int8Linear
    from llmlab.recipes.convert import convert

    gguf = tmp_path / "tiny-q8.gguf"
    convert(checkpoint, gguf, dtype="q8_0")
    loaded = load_for_inference(gguf, quantized=True)
    assert isinstance(loaded.model.layers[0].self_attn.q_proj, Int8Linear) and loaded.tokenizer is not None
    text = tmp_path / "held-out.txt"
    text.write_text(TEXT[:400])
    outputs = []
    for extra in ([], ["--keep-quantized"]):
        code, out, err = run_cli(["eval", "perplexity", "-c", str(gguf), "-f", str(text), "--json", *extra], capsys)
        assert code == 0, err
        outputs.append(out)
        code, out, err = run_cli(["generate", "-c", str(gguf), "-p", "the", "-n", "4", "--temperature", "0", *extra],
                                 capsys)  # fmt: skip
        assert code == 0, err
        outputs.append(out)
    ppl_float, ppl_quantized = (json.loads(out)["perplexity"] for out in outputs[0::2])
    assert ppl_quantized == pytest.approx(ppl_float, rel=1e-5) and outputs[1] == outputs[3]  # as dequantised


def test_convert_writes_a_quantized_folder_in_float(tmp_path: Path, checkpoint: Path, capsys) -> None:
    quantized = tmp_path / "q4"
    args = ["quantize", "--model", str(checkpoint), "--scheme", "int4", "--group-size", "32", "--out", str(quantized)]
    assert run_cli(args, capsys)[0] == 0
    code, _, err = run_cli(["convert", "--from", str(quantized), "--to", str(tmp_path / "f32")], capsys)
    assert code == 0, err
    q, f = load_for_inference(quantized), load_for_inference(tmp_path / "f32")
    assert not is_quantized_folder(tmp_path / "f32") and isinstance(f.model.lm_head, torch.nn.Linear)
    ids = torch.tensor([q.tokenizer.encode("the lazy dog")])
    with torch.no_grad():
        torch.testing.assert_close(f.model(ids).logits, q.model(ids).logits, rtol=1e-5, atol=1e-5)
