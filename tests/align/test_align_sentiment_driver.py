"""benchmarks/align_sentiment.py: its data stage (disjoint sets, openings; English and Chinese), a tiny
reward-model stage, and the report (frontier figure, JSON, table, length check) on made-up evaluations."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def driver():
    spec = importlib.util.spec_from_file_location("align_sentiment", ROOT / "benchmarks" / "align_sentiment.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["align_sentiment"] = module
    spec.loader.exec_module(module)
    return module


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_data_stage_writes_disjoint_sets(driver, tmp_path, lang):
    args = driver.parse_args(["--lang", lang, "--out", str(tmp_path), "--rm-pairs", "40", "--rm-val-pairs", "10",
                              "--prompts", "12", "--train-prompts", "20"])  # fmt: skip
    sizes = driver.build_data(args, args.data_dir)
    assert sizes == {"rm_train": 40, "rm_val": 10, "prompts_train": 20, "prompts_eval": 12}
    train, val = _rows(args.data_dir / "rm_train.jsonl"), _rows(args.data_dir / "rm_val.jsonl")
    texts = lambda rows: {r["chosen"] for r in rows} | {r["rejected"] for r in rows}  # noqa: E731
    assert not texts(train) & texts(val) and all(r["prompt"] == "" for r in train + val)
    assert len(texts(train)) == 80  # every text used once
    from llmlab.data.sentiment import load_task_examples

    label = {e.text: e.label for e in load_task_examples(lang)}
    assert all(label[r["chosen"]] == "positive" and label[r["rejected"]] == "negative" for r in train + val)
    p_train, p_eval = _rows(args.data_dir / "prompts_train.jsonl"), _rows(args.data_dir / "prompts_eval.jsonl")
    assert not {r["prompt"] for r in p_train} & {r["prompt"] for r in p_eval}
    for r in p_train + p_eval:  # openings: a few words / characters, from texts the reward model never saw
        assert len(r["prompt"]) <= 5 if lang == "zh" else len(r["prompt"].split()) <= 4
        assert not any(t.startswith(r["prompt"]) for t in texts(train) | texts(val) if len(r["prompt"]) > 12)
    assert {r["source_label"] for r in p_train + p_eval} == {"positive", "negative"}


def test_reward_model_stage_on_a_tiny_backbone(driver, tmp_path, llama_dir):
    result = driver.main([
        "--out", str(tmp_path), "--stages", "data,rm", "--rm-pairs", "16", "--rm-val-pairs", "8", "--prompts", "4",
        "--train-prompts", "4", "--rm-steps", "2", "--rm-base", str(llama_dir), "--rm-layers", "1",
        "--rm-override", "train.batch_size=4", "--rm-override", "train.eval_interval=2",
    ])  # fmt: skip
    rm = result["reward_model"]
    assert rm["steps"] == 2 and rm["val_pairs"] == 8 and rm["layers"] == 1 and 0 <= rm["val_auc"] <= 1
    assert rm["val_accuracy"] is not None
    assert (tmp_path / "rm" / "reward_model" / "score.safetensors").is_file()
    assert json.loads((tmp_path / "rm-backbone" / "model_config.json").read_text())["num_hidden_layers"] == 1


def test_length_check_helpers(driver):
    ref = [{"length": n, "reward": 0.0} for n in (2, 4, 6, 8)]
    # a policy whose reward comes only from being long: matched to the reference's lengths it gains little
    longer = [{"length": n, "reward": n / 10} for n in (7, 8, 8, 9)] + [{"length": 2, "reward": 0.2}]
    raw = sum(s["reward"] for s in longer) / len(longer)
    matched = driver.length_matched_reward(longer, ref)
    assert matched < raw
    same = [{"length": n, "reward": 1.0} for n in (2, 4, 6, 8)]
    assert driver.length_matched_reward(same, ref) == pytest.approx(1.0)
    assert driver.pearson([1, 2, 3, 4], [2, 4, 6, 8]) == pytest.approx(1.0)
    assert driver.pearson([1, 2, 3], [1, 1, 1]) is None


def test_report_writes_figure_json_and_table(driver, tmp_path):
    args = driver.parse_args(["--docs", str(tmp_path), "--methods", "ppo,dpo"])

    def row(method, strength, reward, kl):  # noqa: ANN001, ANN202
        knob = None if strength is None else driver.STRENGTHS[method][0]
        samples = [{"prompt": "The film", "completion": f" was fine {i}", "reward": reward + i / 10, "kl": kl,
                    "length": 3 + i} for i in range(4)]  # fmt: skip
        return {"method": method, "knob": knob, "strength": strength, "run": None, "reward": reward,
                "reward_stderr": 0.1, "kl": kl, "kl_stderr": 0.01, "length": 4.5, "samples": samples}  # fmt: skip

    rows = [row("reference", None, 0.0, 0.0)]
    rows += [row("ppo", s, 0.5 / s, 1 / s) for s in driver.STRENGTHS["ppo"][1]]
    rows += [row("dpo", s, 0.2 / s, 0.5 / s) for s in driver.STRENGTHS["dpo"][1]]
    rm = {"val_accuracy": 0.8, "val_auc": 0.85, "val_pairs": 100, "base": "x", "layers": 4, "method": "full"}
    summary = driver.write_report(args, rm, rows, tmp_path)
    assert (tmp_path / "frontier.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "frontier.json").read_text())
    assert saved["reward_model"]["val_accuracy"] == 0.8 and len(saved["rows"]) == 7 == len(summary["rows"])
    assert all("length_matched_reward" in r and "samples" not in r for r in saved["rows"])
    table = (tmp_path / "sentiment.md").read_text()
    assert "held-out pairwise accuracy 0.800" in table and table.count("| ppo |") == 3
    assert "**dpo** (dpo.beta=0.2)" in table and "The film was fine 0" in table
