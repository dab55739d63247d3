"""`llmlab generate` on a tiny saved checkpoint (random weights, byte-level BPE tokenizer)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from tiny_models import tiny_gpt

from llmlab.models.gpt import GPT
from llmlab.tokenizers import train_tokenizer_from_iterator

CORPUS = ["ROMEO: But soft, what light through yonder window breaks? 你好世界 " * 10]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ckpt")
    tok = train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=300)
    model = tiny_gpt(0, vocab_size=tok.vocab_size, tie_embeddings=False)
    with torch.no_grad():  # a larger output layer: logits of a few units (not ~0), so penalties and min-p bite
        model.lm_head.weight.mul_(20)
    model.save_pretrained(d)
    tok.save(d)
    return d


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


# ---------------------------------------------------------------------------------------------------- decoder flags
# Each flag must reach the decoder: the CLI output equals the Python API called with the same setting, and
# differs from the output without the flag (so a flag that is parsed but dropped fails the test).

PROMPT = "ROMEO: But soft"


@pytest.fixture(scope="module")
def loaded(checkpoint: Path):
    from llmlab.hub import load_for_inference

    return load_for_inference(checkpoint)


@pytest.fixture(scope="module")
def draft_checkpoint(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A different, smaller random model with the same tokenizer."""
    d = tmp_path_factory.mktemp("draft")
    vocab_size = GPT.from_pretrained(checkpoint).config.vocab_size
    tiny_gpt(1, vocab_size=vocab_size, n_layer=1).save_pretrained(d)
    shutil.copy(checkpoint / "tokenizer.json", d / "tokenizer.json")
    return d


def api_text(loaded, n: int, **kw) -> str:  # noqa: ANN001
    from llmlab.generate import generate_text

    tok = loaded.tokenizer
    return generate_text(loaded.model, tok, tok.encode(PROMPT), n, eos_token_id=[tok.eos_id], **kw)


def cli_text(checkpoint: Path, capsys: pytest.CaptureFixture, *flags: str, n: int = 16) -> str:
    code, out, err = run_cli(["generate", "-c", str(checkpoint), "-p", PROMPT, "-n", str(n), *flags], capsys)
    assert code == 0, err
    assert out.startswith(PROMPT) and out.endswith("\n")
    return out[len(PROMPT) : -1]


@pytest.mark.parametrize(
    "kw",
    [
        {"temperature": 2.0, "min_p": 0.2},  # a flat distribution, so min-p removes a lot
        {"temperature": 0, "repetition_penalty": 1.5},  # greedy: the penalties break its loops
        {"temperature": 0, "frequency_penalty": 1.0},
        {"temperature": 0, "presence_penalty": 1.0},
        {"temperature": 0.8, "repetition_penalty": 1.3, "frequency_penalty": 0.5, "top_p": 0.9},
    ],
)
def test_sampling_flags_equal_the_api(kw: dict, checkpoint: Path, loaded, capsys: pytest.CaptureFixture) -> None:
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    out = cli_text(checkpoint, capsys, "--seed", "1", *flags)
    assert out == api_text(loaded, 16, top_k=200, seed=1, **kw)
    assert out != api_text(loaded, 16, top_k=200, seed=1, temperature=kw["temperature"])  # the flag mattered


def test_stop_strings_cut_the_text(checkpoint: Path, loaded, capsys: pytest.CaptureFixture) -> None:
    full = cli_text(checkpoint, capsys, "-t", "0", n=20)
    assert len(full) > 12
    stop = full[6:9]  # a piece of the greedy text: the output must end right before its first occurrence
    cut = full[: full.index(stop)]
    assert cli_text(checkpoint, capsys, "-t", "0", "--stop", stop, n=20) == cut
    assert api_text(loaded, 20, temperature=0, stop=[stop]) == cut
    later = full[10:12]
    assert cli_text(checkpoint, capsys, "-t", "0", "--stop", later, "--stop", stop, n=20) == cut  # repeatable
    streamed = cli_text(checkpoint, capsys, "-t", "0", "--stop", stop, "--no-stream", n=20)
    assert streamed == cut


def test_num_beams_equals_beam_search(
    checkpoint: Path, loaded, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llmlab.generate as gen

    tok, ids = loaded.tokenizer, torch.tensor([loaded.tokenizer.encode(PROMPT)])
    original = gen.beam_search

    def completions(sequences: torch.Tensor) -> list[str]:
        """The text after the prompt of every row, up to its first EOS (which the CLI does not print)."""
        rows = [row[ids.size(1) :].tolist() for row in sequences]
        return [tok.decode(row[: row.index(tok.eos_id)] if tok.eos_id in row else row) for row in rows]

    ref = original(loaded.model, ids, 12, num_beams=3, num_return_sequences=2, eos_token_id=[tok.eos_id])
    texts = completions(ref.sequences)
    assert cli_text(checkpoint, capsys, "--num-beams", "3", n=12) == texts[0]
    two = cli_text(checkpoint, capsys, "--num-beams", "3", "--num-samples", "2", n=12)
    assert two == f"{texts[0]}\n---------------\n{PROMPT}{texts[1]}"  # the two best beams

    calls: list[dict] = []

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        calls.append(kwargs)
        return original(*args, **kwargs)

    import llmlab.recipes.generate as recipe

    monkeypatch.setattr(recipe, "beam_search", spy)
    flags = ["--num-beams", "4", "--length-penalty", "2.0", "--early-stopping", "never", "--repetition-penalty", "1.5"]
    out = cli_text(checkpoint, capsys, *flags, n=12)
    (kw,) = calls
    sampling = kw["sampling"]
    assert (sampling.num_beams, sampling.length_penalty, sampling.early_stopping) == (4, 2.0, "never")
    assert sampling.repetition_penalty == 1.5
    penalty = gen.RepetitionPenaltyProcessor(1.5)
    options = {"num_beams": 4, "length_penalty": 2.0, "early_stopping": "never", "eos_token_id": [tok.eos_id]}
    assert out == completions(original(loaded.model, ids, 12, logits_processors=[penalty], **options).sequences)[0]
    assert out != completions(original(loaded.model, ids, 12, **options).sequences)[0]  # the penalty mattered


def test_draft_and_prompt_lookup_equal_greedy(
    checkpoint: Path, draft_checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    greedy = cli_text(checkpoint, capsys, "-t", "0", n=20)
    for flags in (["--draft", str(draft_checkpoint)], ["--draft", str(checkpoint)], ["--prompt-lookup", "4"]):
        code, out, err = run_cli(["generate", "-c", str(checkpoint), "-p", PROMPT, "-n", "20", *flags], capsys)
        assert code == 0, err
        assert out == PROMPT + greedy + "\n", flags
        assert "llmlab: speculative decoding:" in err
    # The model as its own draft: every guess is right, so the stats show it really drafted.
    code, out, err = run_cli(
        [
            "generate",
            "-c",
            str(checkpoint),
            "-p",
            PROMPT,
            "-n",
            "20",
            "--draft",
            str(checkpoint),
            "--draft-tokens",
            "3",
        ],
        capsys,
    )
    assert code == 0 and "(100%)" in err and out == PROMPT + greedy + "\n"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--num-beams", "2", "--temperature", "0.7"], "--num-beams decodes deterministically"),
        (["--num-beams", "2", "--top-p", "0.9"], "--top-p only apply when sampling"),
        (["--num-beams", "2", "--stream"], "--stream is not available with --num-beams"),
        (["--num-beams", "2", "--stop", "x"], "--stop is not supported with --num-beams"),
        (["--num-beams", "2", "--num-samples", "3"], "use at most --num-beams 2"),
        (["--num-beams", "2", "--prompt-lookup", "3"], "cannot be combined with --draft/--prompt-lookup"),
        (["--draft", "x", "--prompt-lookup", "3"], "pick one"),
        (["--prompt-lookup", "3", "--min-p", "0.1"], "--min-p only apply when sampling"),
        (["--prompt-lookup", "3", "--repetition-penalty", "1.2"], "--repetition-penalty not supported"),
        (["--prompt-lookup", "3", "--no-cache"], "--no-cache is not possible"),
        (["--length-penalty", "2"], "add --num-beams"),
        (["--draft-tokens", "2"], "add --draft MODEL"),
        (["--num-beams", "2", "--early-stopping", "maybe"], "--early-stopping must be true, false or never"),
    ],
)
def test_incompatible_flags_are_one_line_errors(
    flags: list[str], message: str, checkpoint: Path, capsys: pytest.CaptureFixture
) -> None:
    code, out, err = run_cli(["generate", "-c", str(checkpoint), "-p", "hi", *flags], capsys)
    assert code == 2 and out == ""
    assert err.startswith("llmlab: error:") and err.count("\n") == 1 and message in err, err
