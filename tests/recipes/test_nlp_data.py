"""`llmlab data <set>` (llmlab.recipes.nlp_data): the written folder, its README, and the output-folder policy."""

from __future__ import annotations

import json

import pytest
from cli_helpers import run_cli

from llmlab.data.nlp_sets import NLP_SETS, build_ner
from llmlab.io import is_llmlab_output
from llmlab.recipes.nlp_data import write_nlp_set


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_write_ner_writes_the_built_splits_and_a_readme(tmp_path):
    out = tmp_path / "ner"
    paths = write_nlp_set("ner", out, seed=3, train=20, val=5, test=7, lang="en")
    assert [p.name for p in paths] == ["train.jsonl", "val.jsonl", "test.jsonl", "README.md"]
    built = build_ner(20, 5, 7, lang="en", seed=3)
    for split in ("train", "val", "test"):
        assert _read(out / f"{split}.jsonl") == built[split]
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "Generated from templates" in readme and "jieba" in readme and "| test | 7 |" in readme
    assert "--seed 3" in readme and is_llmlab_output(out)


def test_readmes_state_real_data_source_and_licence(tmp_path):
    write_nlp_set("cedict", tmp_path / "c", train=3, val=2, test=2)
    readme = (tmp_path / "c" / "README.md").read_text(encoding="utf-8")
    assert "Real (non-synthetic) data" in readme and "CC BY-SA 4.0" in readme and "cc-cedict date" in readme
    assert "Generated from templates" not in readme
    assert all(spec.licence and spec.source for spec in NLP_SETS.values())


def test_output_policy_refuses_before_building_and_overwrites_only_llmlab_outputs(tmp_path):
    out = tmp_path / "qa"
    write_nlp_set("qa", out, train=4, val=2, test=2)
    with pytest.raises(ValueError, match="already exists"):
        write_nlp_set("qa", out, train=4, val=2, test=2)
    write_nlp_set("qa", out, train=6, val=2, test=2, overwrite=True, seed=1)
    assert len(_read(out / "train.jsonl")) == 6
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="did not create"):
        write_nlp_set("qa", foreign, train=4, val=2, test=2, overwrite=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["data", "ner", "--lang", "fr"], "--lang of `data ner` must be one of zh, en"),
        (["data", "docstrings", "--lang", "zh"], "has no --lang option"),
        (["data", "qa", "--train", "-1"], "--train must be >= 0"),
    ],
)
def test_cli_errors_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "o"
    code, _, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_writes_relation_set_and_refuses_a_second_time(tmp_path, capsys):
    out = tmp_path / "rel"
    code, stdout, _ = run_cli(["data", "relation", "--out", str(out), "--train", "8", "--val", "2", "--test", "2",
                               "--lang", "en", "--seed", "5"], capsys)  # fmt: skip
    assert code == 0 and str(out / "README.md") in stdout
    rows = _read(out / "train.jsonl")
    assert len(rows) == 8 and all(r["text"][r["head"][0] : r["head"][1]] for r in rows)
    code, _, err = run_cli(["data", "relation", "--out", str(out)], capsys)
    assert code == 2 and "--overwrite" in err
