"""llmlab's harness and lm-evaluation-harness 0.4.13 agree on a tiny random Llama saved as a Hugging Face folder:
same acc and acc_norm, per-document per-choice log-likelihoods within 1e-4, and the same prompts (zero- and
two-shot, i.e. the same few-shot draws). lm-eval runs in a subprocess, offline, with a private HF_HOME.

`fewshot_split: test` makes lm-eval draw few-shot examples from the test documents excluding the evaluated one
(llmlab's rule); without a `fewshot_split` lm-eval 0.4.13 samples the test split without that exclusion.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_models import spread, tiny_llama

from llmlab.eval.harness.lm import ModelLM
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import load_task
from llmlab.hub import load_for_inference
from llmlab.models import save_hf

HERE = Path(__file__).resolve().parent
WORDS = ["positive", "negative", "fox", "dog", "great", "boring", "quick brown", "lazy"]

LM_EVAL_YAML = """\
task: toy_parity
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
fewshot_split: test
output_type: multiple_choice
doc_to_text: "Review: {{{{question}}}}\\nSentiment:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
  - metric: acc_norm
"""

LLMLAB_YAML = """\
task: toy_parity
dataset: {{path: {data}}}
output_type: multiple_choice
doc_to_text: "Review: {{{{question}}}}\\nSentiment:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metrics: [acc, acc_norm]
"""


@pytest.fixture(scope="module")
def parity_setup(tmp_path_factory, bpe_tokenizer):
    """(HF model folder, lm-eval task folder, llmlab task YAML)."""
    root = tmp_path_factory.mktemp("parity")
    model = spread(tiny_llama(0, vocab_size=bpe_tokenizer.vocab_size, max_position_embeddings=128), std=0.2, seed=0)
    save_hf(model, root / "model")
    bpe_tokenizer.save(root / "model")
    rng = random.Random(0)
    docs = []
    for i in range(24):
        question = f"the film was {rng.choice(WORDS)} and {i}"
        docs.append({"question": question, "choices": rng.sample(WORDS, 4), "label": rng.randrange(4)})
    data = root / "docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (root / "lm_eval_tasks").mkdir()
    (root / "lm_eval_tasks" / "toy_parity.yaml").write_text(LM_EVAL_YAML.format(data=data), encoding="utf-8")
    (root / "llmlab_task.yaml").write_text(LLMLAB_YAML.format(data=data), encoding="utf-8")
    return root


def run_lm_eval(root: Path, num_fewshot: int) -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf_home"),
        "HF_DATASETS_CACHE": str(root / "hf_home" / "datasets"),
    }
    args = [str(root / "model"), str(root / "lm_eval_tasks"), "toy_parity", str(num_fewshot)]
    proc = subprocess.run(
        [sys.executable, str(HERE / "lm_eval_parity.py"), *args], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("num_fewshot", [0, 2])
def test_acc_equals_lm_eval(parity_setup, num_fewshot, tmp_path):
    root = parity_setup
    theirs = run_lm_eval(root, num_fewshot)
    loaded = load_for_inference(root / "model")
    lm = ModelLM(loaded.model, loaded.tokenizer, batch_size=5)
    ours = evaluate(lm, [load_task(root / "llmlab_task.yaml")], num_fewshot=num_fewshot, samples_path=tmp_path)
    samples = [json.loads(line) for line in (tmp_path / "samples_toy_parity.jsonl").read_text().splitlines()]
    assert [s["prompt"] for s in samples] == theirs["contexts"]
    for s, lls in zip(samples, theirs["loglikelihoods"], strict=True):
        assert s["loglikelihoods"] == pytest.approx(lls, abs=1e-4)
    assert ours["toy_parity"]["acc"] == theirs["acc"]
    assert ours["toy_parity"]["acc_norm"] == theirs["acc_norm"]
    assert 0 < theirs["acc"] < 1  # a random model that is neither always right nor always wrong
