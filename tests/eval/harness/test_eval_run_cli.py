"""`llmlab eval run` on a tiny saved checkpoint and a local task: table, JSON, output folder policy, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli
from tiny_models import spread, tiny_llama

from llmlab.eval.harness.task import builtin_task_names

TASK = """\
task: toy_cli
dataset: {path: docs.jsonl}
output_type: multiple_choice
doc_to_text: "Review: {{text}}\\nSentiment:"
doc_to_choice: ["negative", "positive"]
doc_to_target: "{{label}}"
metrics: [acc, acc_norm, ece]
"""

GEN_TASK = """\
task: toy_gen_cli
dataset: {path: docs.jsonl}
output_type: generate_until
doc_to_text: "Review: {{text}}\\nSentiment:"
doc_to_target: "{{['negative', 'positive'][label]}}"
generation_kwargs: {until: ["\\n"], max_new_tokens: 3}
metrics: [exact_match, chrf]
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory, bpe_tokenizer) -> Path:
    root = tmp_path_factory.mktemp("cli")
    model = spread(tiny_llama(0, vocab_size=bpe_tokenizer.vocab_size, max_position_embeddings=64), std=0.2, seed=0)
    model.save_pretrained(root / "ckpt")
    bpe_tokenizer.save(root / "ckpt")
    docs = [{"text": f"the film was {'great' if i % 2 else 'awful'} {i}", "label": i % 2} for i in range(8)]
    (root / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "toy.yaml").write_text(TASK, encoding="utf-8")
    (root / "gen.yaml").write_text(GEN_TASK, encoding="utf-8")
    return root


def test_eval_run_table_json_and_output(setup, tmp_path, capsys):
    ckpt, tasks = str(setup / "ckpt"), f"{setup / 'toy.yaml'},{setup / 'gen.yaml'}"
    code, out, err = run_cli(["eval", "run", "--tasks", tasks, "--model", ckpt, "--limit", "6"], capsys)
    assert code == 0, err
    assert "toy_cli" in out and "acc_norm" in out and "±" in out and "toy_gen_cli" in out and "exact_match" in out
    dst = tmp_path / "evals"
    args = ["eval", "run", "-t", tasks, "-m", ckpt, "--num-fewshot", "2", "--output", str(dst), "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    printed = json.loads(out)
    assert printed["results"]["toy_cli"]["n"] == 8 and printed["results"]["toy_cli"]["num_fewshot"] == 2
    saved = json.loads((dst / "results.json").read_text())
    assert saved["results"] == printed["results"] and saved["models"] == [ckpt]
    samples = [json.loads(line) for line in (dst / "samples_toy_cli.jsonl").read_text().splitlines()]
    assert len(samples) == 8 and samples[0]["prompt"].count("Review:") == 3
    assert len(samples[0]["loglikelihoods"]) == 2
    assert (dst / "samples_toy_gen_cli.jsonl").is_file() and (dst / ".llmlab-output").is_file()
    code, _, err = run_cli(args, capsys)  # the folder exists: refused without --overwrite
    assert code == 2 and "--overwrite" in err
    code, _, err = run_cli([*args, "--overwrite", "--limit", "3"], capsys)
    assert code == 0, err
    assert json.loads((dst / "results.json").read_text())["results"]["toy_cli"]["n"] == 3


def test_eval_run_errors(setup, tmp_path, capsys):
    ckpt = str(setup / "ckpt")
    code, _, err = run_cli(["eval", "run", "--tasks", "no_such_task", "--model", ckpt], capsys)
    assert code == 2 and "unknown task 'no_such_task'" in err and len(err.strip().splitlines()) == 1
    for name in builtin_task_names():
        assert name in err
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    toy = str(setup / "toy.yaml")
    code, _, err = run_cli(["eval", "run", "-t", toy, "-m", ckpt, "--output", str(foreign), "--overwrite"], capsys)
    assert code == 2 and "did not create" in err and (foreign / "notes.txt").read_text() == "keep me"
    code, _, err = run_cli(["eval", "run", "-t", toy, "-m", ckpt, "-m", ckpt], capsys)
    assert code == 2 and "--ensemble mean or --ensemble vote" in err
    code, _, err = run_cli(["eval", "run", "-t", toy, "-m", ckpt, "-m", ckpt, "--ensemble", "median"], capsys)
    assert code == 2 and "--ensemble must be one of mean, vote" in err
    code, _, err = run_cli(["eval", "run", "-t", f"{toy},{toy}", "-m", ckpt], capsys)
    assert code == 2 and "given twice" in err
    code, _, err = run_cli(["eval", "run", "-t", toy, "-m", str(tmp_path / "nothing")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1


def test_eval_run_ensemble_of_one_model_twice(setup, capsys):
    """Two copies of one model averaged (or voting) score exactly like the model alone."""
    ckpt, toy = str(setup / "ckpt"), str(setup / "toy.yaml")
    code, out, err = run_cli(["eval", "run", "-t", toy, "-m", ckpt, "--json"], capsys)
    assert code == 0, err
    alone = json.loads(out)["results"]["toy_cli"]
    for method in ("mean", "vote"):
        args = ["eval", "run", "-t", toy, "-m", ckpt, "-m", ckpt, "--ensemble", method, "--json"]
        code, out, err = run_cli(args, capsys)
        assert code == 0, err
        both = json.loads(out)["results"]["toy_cli"]
        assert both["acc"] == alone["acc"]
        if method == "mean":
            assert both["acc_norm"] == alone["acc_norm"] and both["ece"] == pytest.approx(alone["ece"], abs=1e-6)


def test_task_data_and_fewshot_pools_are_checked_before_the_model_loads(setup, tmp_path, capsys):
    """A model path that does not exist is never reached: the task's problem is reported first, in one line."""
    missing_model = str(tmp_path / "no_model")
    code, _, err = run_cli(["eval", "run", "-t", "sentiment_en", "-m", missing_model, "--num-fewshot", "51"], capsys)
    assert code == 2 and "51-shot needs 51 few-shot examples, its pool has 50" in err, err
    bad = tmp_path / "bad.yaml"
    bad.write_text(TASK.replace("docs.jsonl", str(tmp_path / "gone.jsonl")), encoding="utf-8")
    code, _, err = run_cli(["eval", "run", "-t", str(bad), "-m", missing_model], capsys)
    assert code == 2 and "gone.jsonl" in err and "no_model" not in err, err
