"""Task YAMLs (validation with one-line errors), prompts and few-shot sampling, the runner's metrics and samples."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from llmlab.eval.harness.prompts import FewshotSampler, build_context, doc_to_choice, doc_to_target, gold_index
from llmlab.eval.harness.results import format_table, write_results
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import builtin_task_names, load_documents, load_task
from llmlab.eval.metrics import bleu, chrf

MC_YAML = """\
task: toy_mc
description: "Pick the word.\\n\\n"
dataset: {path: docs.jsonl}
output_type: multiple_choice
doc_to_text: "Q: {{question}}\\nA:"
doc_to_choice: "{{choices}}"
doc_to_target: "{{label}}"
metrics: [acc, acc_norm, macro_f1, ece]
"""

GEN_YAML = """\
task: toy_gen
dataset: {path: docs.jsonl}
output_type: generate_until
doc_to_text: "{{a}} + {{b}} ="
doc_to_target: "{{a + b}}"
generation_kwargs: {until: ["\\n"], max_new_tokens: 4}
metrics: [exact_match, f1, bleu, chrf, rouge]
"""


def write_task(tmp_path: Path, text: str, docs: list[dict], name: str = "task.yaml") -> Path:
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


MC_DOCS = [{"question": f"q{i}", "choices": ["a", "bbbb", "cc"], "label": i % 3} for i in range(12)]


class FakeLM:
    """An EvalLM whose log-likelihood of a continuation is a fixed function of its text and the context's length."""

    name = "fake"

    def __init__(self, table: dict[str, float] | None = None, outputs: dict[str, str] | None = None) -> None:
        self.table, self.outputs = table or {}, outputs or {}
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, requests):
        self.requests += requests
        return [(self.table[cont.strip()] - 0.01 * (len(ctx) % 7), False) for ctx, cont in requests]

    def score(self, requests):  # pragma: no cover - not used by the runner
        raise NotImplementedError

    def generate_until(self, requests):
        return [self.outputs[ctx] for ctx, _ in requests]

    def tokenizer_fingerprint(self):
        return "fake"


def test_load_task_and_documents(tmp_path):
    task = load_task(write_task(tmp_path, MC_YAML, MC_DOCS))
    assert task.name == "toy_mc" and task.output_type == "multiple_choice"
    assert task.metrics == ("acc", "acc_norm", "macro_f1", "ece")
    docs, pool = load_documents(task)
    assert docs == MC_DOCS and pool is docs
    assert doc_to_choice(task, docs[1]) == ["a", "bbbb", "cc"]
    assert doc_to_target(task, docs[1]) == 1 and gold_index(task, docs[2], ["a", "bbbb", "cc"]) == 2
    assert build_context(task, docs[0], [docs[1]]) == "Pick the word.\n\nQ: q1\nA: bbbb\n\nQ: q0\nA:"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("output_type: multiple_choice", "output_type: multiple"), "output_type must be one of"),
        (("metrics: [acc, acc_norm, macro_f1, ece]", "metrics: [bleu]"), "metrics for multiple_choice"),
        (("doc_to_target:", "doc_to_targte:"), "unknown key 'doc_to_targte'"),
        (("dataset: {path: docs.jsonl}", "dataset: {path: docs.jsonl, builder: x}"), "exactly one of"),
        (("dataset: {path: docs.jsonl}", "dataset: {path: missing.jsonl}"), "task data file not found"),
        (('doc_to_choice: "{{choices}}"\n', ""), "doc_to_choice is required"),
        (("task: toy_mc", "task: toy_mc\nnum_fewshot: -1"), "num_fewshot must be a non-negative integer"),
    ],
)
def test_task_errors_name_file_and_key(tmp_path, edit, message):
    path = write_task(tmp_path, MC_YAML.replace(*edit), MC_DOCS)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_documents(load_task(path))
    assert message in str(info.value) and "\n" not in str(info.value)
    if "not found" not in message:
        assert str(path) in str(info.value)


def test_unknown_task_lists_builtins():
    with pytest.raises(ValueError, match="unknown task 'no_such_task'; built-in tasks: ") as info:
        load_task("no_such_task")
    for name in builtin_task_names():
        assert name in str(info.value)


def test_fewshot_never_the_document_and_seeded():
    pool = [{"i": i} for i in range(6)]
    draws = [FewshotSampler(pool, 1234, excludes_eval_doc=True) for _ in range(2)]
    for doc in pool:
        a, b = (s.sample(5, doc) for s in draws)
        assert a == b and doc not in a and len(a) == 5 and len({d["i"] for d in a}) == 5
    other = FewshotSampler(pool, 99, excludes_eval_doc=True)
    assert [other.sample(3, d) for d in pool] != [FewshotSampler(pool, 1234, True).sample(3, d) for d in pool]
    with pytest.raises(ValueError, match="needs 6 few-shot examples"):
        FewshotSampler(pool, 0, True).sample(6, pool[0])


def test_runner_multiple_choice_metrics_and_samples(tmp_path):
    task = load_task(write_task(tmp_path, MC_YAML, MC_DOCS))
    # "bbbb" has the highest log-likelihood, "a" the highest per character: acc picks 1, acc_norm picks 0
    lm = FakeLM({"a": -1.0, "bbbb": -0.5, "cc": -3.0})
    out = tmp_path / "out"
    out.mkdir()
    res = evaluate(lm, [task], num_fewshot=2, limit=9, samples_path=out, bootstrap_iters=50)["toy_mc"]
    golds = [d["label"] for d in MC_DOCS[:9]]
    acc = [float(g == 1) for g in golds]
    assert res["n"] == 9 and res["num_fewshot"] == 2
    assert res["acc"] == pytest.approx(sum(acc) / 9)
    assert res["acc_stderr"] == pytest.approx(math.sqrt(sum((a - 3 / 9) ** 2 for a in acc) / 8 / 9))
    assert res["acc_norm"] == pytest.approx(sum(g == 0 for g in golds) / 9)
    assert 0 <= res["ece"] <= 1 and res["macro_f1"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert res["macro_f1_stderr"] > 0
    assert all(cont.startswith(" ") for _, cont in lm.requests)  # target_delimiter before each choice
    samples = [json.loads(line) for line in (out / "samples_toy_mc.jsonl").read_text().splitlines()]
    assert len(samples) == 9 and samples[0]["choices"] == ["a", "bbbb", "cc"] and samples[0]["pred"] == 1
    assert samples[0]["prompt"].count("Q: ") == 3 and "Q: q0\nA: " not in samples[0]["prompt"]
    assert len(samples[0]["loglikelihoods"]) == 3 and samples[1]["acc"] == 1.0
    table = format_table({"toy_mc": res})
    assert "acc_norm" in table and "±" in table
    write_results(out, {"toy_mc": res}, {"model": "fake"})
    assert json.loads((out / "results.json").read_text())["results"]["toy_mc"]["n"] == 9


def test_runner_generate_until(tmp_path):
    docs = [{"a": a, "b": b} for a, b in [(12, 7), (40, 3), (5, 5), (10, 20)]]
    task = load_task(write_task(tmp_path, GEN_YAML, docs))
    outputs = {"12 + 7 =": " 19", "40 + 3 =": " 42", "5 + 5 =": " 10", "10 + 20 =": " 30 "}
    res = evaluate(FakeLM(outputs=outputs), [task], bootstrap_iters=20)["toy_gen"]
    assert res["exact_match"] == pytest.approx(0.75) and res["f1"] == pytest.approx(0.75)
    assert res["exact_match_stderr"] == pytest.approx(0.25)
    hyps, refs = ["19", "42", "10", "30"], ["19", "43", "10", "30"]
    assert res["bleu"] == pytest.approx(bleu(hyps, refs)) and res["chrf"] == pytest.approx(chrf(hyps, refs))
    assert res["chrf"] > 50 and res["rouge1"] == pytest.approx(0.75) and res["chrf_stderr"] > 0


def test_builtin_builder_task_runs_end_to_end(tiny_lm_model, bpe_tokenizer):
    """A built-in task (dataset.builder) through a real ModelLM: few-shot examples from the builder's pool."""
    from llmlab.eval.harness.lm import ModelLM

    task = load_task("arithmetic_2digit")
    test, pool = load_documents(task)
    assert test and pool and pool is not test
    lm = ModelLM(tiny_lm_model, bpe_tokenizer, batch_size=2)
    res = evaluate(lm, [task], num_fewshot=1, limit=3, bootstrap_iters=10)["arithmetic_2digit"]
    assert res["n"] == 3 and res["num_fewshot"] == 1 and 0.0 <= res["exact_match"] <= 1.0


def test_task_list_all_expands_to_every_builtin_task_once():
    from llmlab.eval.tasks import builtin_task_paths
    from llmlab.recipes.eval_tasks import parse_task_list

    builtin = list(builtin_task_paths())
    assert [t.name for t in parse_task_list("all")] == builtin
    names = [t.name for t in parse_task_list("shakespeare_cloze,all")]
    assert names[0] == "shakespeare_cloze" and sorted(names) == sorted(builtin)
