"""`llmlab.data.arithmetic`: seeded word problems with exact answers and disjoint splits."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

from llmlab.align.rewards import arithmetic_reward
from llmlab.data.arithmetic import arithmetic_splits


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_splits_are_seeded_disjoint_and_correct(lang):
    train, test = arithmetic_splits(400, 100, seed=3, lang=lang)
    assert (train, test) == arithmetic_splits(400, 100, seed=3, lang=lang)
    assert train != arithmetic_splits(400, 100, seed=4, lang=lang)[0]
    assert len(train) == 400 and len(test) == 100
    key = lambda r: (r["op"], r["a"], r["b"])  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in test}
    assert len({key(r) for r in train}) == 400
    for r in train + test:
        assert 10 <= r["a"] <= 99 and 10 <= r["b"] <= 99 and r["answer"] >= 0
        assert r["answer"] == (r["a"] + r["b"] if r["op"] == "+" else r["a"] - r["b"])
        assert str(r["a"]) in r["prompt"] and str(r["b"]) in r["prompt"]
    ops = [r["op"] for r in train + test]
    assert ops.count("+") == ops.count("-") == 250
    assert arithmetic_reward([], [str(r["answer"]) for r in test], test) == [1.0] * 100


def test_cli_writes_jsonl_and_never_replaces_a_foreign_folder(tmp_path, capsys):
    out = tmp_path / "arith"
    code, _, err = run_cli(["data", "arithmetic", "--out", str(out), "--train", "10", "--test", "5"], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in (out / "test.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and {"prompt", "answer"} <= set(rows[0])
    code, _, err = run_cli(["data", "arithmetic", "--out", str(out), "--train", "12", "--test", "5"], capsys)
    assert code == 2 and "--overwrite" in err  # an earlier output: only with --overwrite
    code, _, err = run_cli(["data", "arithmetic", "--out", str(out), "--train", "12", "--overwrite"], capsys)
    assert code == 0 and len((out / "train.jsonl").read_text().splitlines()) == 12
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    code, _, err = run_cli(["data", "arithmetic", "--out", str(foreign), "--overwrite"], capsys)
    assert code == 2 and "did not create" in err and (foreign / "notes.txt").read_text() == "keep me"
    code, _, err = run_cli(["data", "arithmetic", "--out", str(tmp_path / "x"), "--style", "poem"], capsys)
    assert code == 2 and "unknown style" in err and not (tmp_path / "x").exists()
    with pytest.raises(ValueError, match="distinct problems"):
        arithmetic_splits(20000, 1)


def test_fewshot_and_equation_styles():
    from llmlab.align.rewards import arithmetic_final_reward

    _, (few,) = arithmetic_splits(0, 1, seed=1, style="fewshot")
    _, (eq,) = arithmetic_splits(0, 1, seed=1, style="equation")
    assert few["prompt"].endswith("\nAnswer:") and "Answer: 37\n" in few["prompt"]
    assert "Answer: 23 + 14 = 37\n" in eq["prompt"] and eq["answer"] == few["answer"]
    calc = f" {eq['a']} {eq['op']} {eq['b']} = {eq['answer']}"
    assert arithmetic_final_reward([], [calc], [eq]) == [1.0]
    with pytest.raises(ValueError, match="unknown style"):
        arithmetic_splits(0, 1, style="cot")
