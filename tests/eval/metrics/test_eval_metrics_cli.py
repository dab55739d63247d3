"""`llmlab eval metrics` through the real entry point: the sacrebleu README example, Chinese, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli

HYP = ["The dog bit the man.", "It wasn't surprising.", "The man had just bitten him."]
REF1 = ["The dog bit the man.", "It was not unexpected.", "The man bit him first."]
REF2 = ["The dog had bit the man.", "No one was surprised.", "The man had bitten the dog."]


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path, Path]:
    return _write(tmp_path / "hyp.txt", HYP), _write(tmp_path / "ref1.txt", REF1), _write(tmp_path / "ref2.txt", REF2)


def test_two_reference_files_reproduce_the_sacrebleu_readme(files, capsys):
    hyp, ref1, ref2 = files
    code, out, err = run_cli(["eval", "metrics", "--hyp", str(hyp), "--ref", str(ref1), "--ref", str(ref2)], capsys)
    assert code == 0, err
    assert "BLEU        48.53" in out and "chrF2       59.73" in out  # README: BLEU = 48.53, chrF2 = 59.73
    for label in ("ROUGE-1 F", "ROUGE-2 F", "ROUGE-L F", "exact match", "token F1"):
        assert label in out
    code, out, err = run_cli(
        ["eval", "metrics", "--hyp", str(hyp), "--ref", str(ref1), "--ref", str(ref2), "--json"], capsys
    )
    result = json.loads(out)
    assert round(result["bleu"], 2) == 48.53 and result["n"] == 3
    assert result["exact_match"] == pytest.approx(1 / 3)  # line 1 is identical to a reference


def test_metric_selection_and_chinese(tmp_path, capsys):
    hyp = _write(tmp_path / "h.txt", ["今天天气很好啊", "北京。"])
    ref = _write(tmp_path / "r.txt", ["今天天气很好", "北京"])
    args = ["eval", "metrics", "--hyp", str(hyp), "--ref", str(ref), "--metric", "bleu,em", "--lang", "zh", "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    result = json.loads(out)
    assert set(result) == {"bleu", "exact_match", "exact_match_stderr", "n", "lang"}
    assert result["exact_match"] == 0.5  # "北京。" matches "北京" once punctuation is removed
    assert result["bleu"] > 0  # the zh tokenizer splits characters; 13a would see no shared word


def test_an_empty_line_in_a_second_reference_file_is_no_reference(tmp_path, capsys):
    hyp = _write(tmp_path / "h.txt", HYP)
    ref1 = _write(tmp_path / "r1.txt", ["", *REF1[1:]])  # README "variable number of references": BLEU 29.44
    ref2 = _write(tmp_path / "r2.txt", REF2)
    args = ["eval", "metrics", "--hyp", str(hyp), "--ref", str(ref1), "--ref", str(ref2), "--metric", "bleu", "--json"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and round(json.loads(out)["bleu"], 2) == 29.44


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--metric", "bleu,meteor"], "unknown metric 'meteor' in --metric; choose from bleu,chrf,rouge,em,f1"),
        (["--metric", ","], "--metric is empty"),
        (["--lang", "fr"], "unknown --lang 'fr'; choose one of en, zh"),
    ],
)
def test_bad_options_are_one_line_errors(files, capsys, extra, message):
    hyp, ref1, _ = files
    code, out, err = run_cli(["eval", "metrics", "--hyp", str(hyp), "--ref", str(ref1), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and out == ""


def test_bad_files_are_one_line_errors(files, tmp_path, capsys):
    hyp, ref1, _ = files
    code, _, err = run_cli(["eval", "metrics", "--hyp", str(hyp), "--ref", str(tmp_path / "missing.txt")], capsys)
    assert code == 2 and "--ref file not found" in err and "missing.txt" in err
    short = _write(tmp_path / "short.txt", REF1[:2])
    code, _, err = run_cli(["eval", "metrics", "--hyp", str(hyp), "--ref", str(short)], capsys)
    assert code == 2 and "short.txt has 2 lines but --hyp file" in err and "has 3" in err
    empty = _write(tmp_path / "empty.txt", [])
    code, _, err = run_cli(["eval", "metrics", "--hyp", str(empty), "--ref", str(ref1)], capsys)
    assert code == 2 and "empty.txt is empty" in err
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9\n" * 3)
    code, _, err = run_cli(["eval", "metrics", "--hyp", str(latin1), "--ref", str(ref1)], capsys)
    assert code == 2 and "is not UTF-8" in err


def test_one_example_gives_strict_json_and_no_nan(tmp_path, capsys):
    """One line has no standard error: JSON null (strict JSON, no bare NaN) and "n/a" in the table."""
    (tmp_path / "h.txt").write_text("the cat sat\n", encoding="utf-8")
    (tmp_path / "r.txt").write_text("the cat sat\n", encoding="utf-8")
    args = ["eval", "metrics", "--hyp", str(tmp_path / "h.txt"), "--ref", str(tmp_path / "r.txt"), "--metric", "em"]
    code, out, err = run_cli([*args, "--json"], capsys)
    assert code == 0, err
    result = json.loads(out, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))
    assert result["exact_match"] == 1.0 and result["exact_match_stderr"] is None
    code, out, _ = run_cli(args, capsys)
    assert code == 0 and "1.0000 ± n/a" in out
