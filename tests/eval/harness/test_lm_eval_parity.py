"""llmlab's harness and lm-evaluation-harness 0.4.13 agree on a tiny random Llama saved as a Hugging Face folder:
same acc and acc_norm, per-document per-choice log-likelihoods within 1e-4, and the same prompts (zero- and
two-shot, i.e. the same few-shot draws); for a generate_until task the same greedy generations, string for
string, with stop strings, EOS and left truncation of long prompts (a model whose context is too short for the
two-shot prompts). lm-eval runs in a subprocess, offline, with a private HF_HOME.

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
import torch
from tiny_models import spread, tiny_llama

from llmlab.config.sampling import SamplingConfig
from llmlab.eval.harness.lm import ModelLM
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import load_task
from llmlab.generate import generate_batch
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


def run_lm_eval(root: Path, num_fewshot: int, model: str = "model", task: str = "toy_parity") -> dict:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(root / "hf_home"),
        "HF_DATASETS_CACHE": str(root / "hf_home" / "datasets"),
    }
    args = [str(root / model), str(root / "lm_eval_tasks"), task, str(num_fewshot)]
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


GEN_CONTEXT = 48  # the generation model's context: two-shot prompts exceed GEN_CONTEXT - MAX_GEN_TOKS tokens
MAX_GEN_TOKENS = 8

LM_EVAL_GEN_YAML = """\
task: toy_gen_parity
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
fewshot_split: test
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: {max_new}
  do_sample: false
metric_list:
  - metric: exact_match
"""

LLMLAB_GEN_YAML = """\
task: toy_gen_parity
dataset: {{path: {data}}}
output_type: generate_until
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs: {{until: ["\\n"], max_new_tokens: {max_new}}}
metrics: [exact_match]
"""


@pytest.fixture(scope="module")
def gen_setup(parity_setup, bpe_tokenizer):
    """parity_setup's folder plus a short-context model ("gen_model") and a 12-document generate_until task."""
    root = parity_setup
    ids = {"bos_token_id": bpe_tokenizer.bos_id, "eos_token_id": bpe_tokenizer.eos_id}  # Hugging Face stops at EOS
    model = tiny_llama(1, vocab_size=bpe_tokenizer.vocab_size, max_position_embeddings=GEN_CONTEXT, **ids,
                       tie_word_embeddings=False)  # fmt: skip
    model = spread(model, std=0.2, seed=1)
    with torch.no_grad():  # louder newline and EOS rows: some generations stop at "\n", some at EOS, some run out
        model.lm_head.weight[bpe_tokenizer.encode("\n")[0]] *= 2.0
        model.lm_head.weight[bpe_tokenizer.eos_id] *= 3.0
    save_hf(model, root / "gen_model")
    bpe_tokenizer.save(root / "gen_model")
    rng = random.Random(1)
    docs = []
    for i in range(12):
        a, b = rng.randrange(50), rng.randrange(50)
        question = f"{a} + {b} =" if i % 3 else f"the {rng.choice(WORDS)} fox and the {rng.choice(WORDS)} dog {i}"
        docs.append({"question": question, "answer": str(a + b)})
    data = root / "gen_docs.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    lm_eval_yaml = LM_EVAL_GEN_YAML.format(data=data, max_new=MAX_GEN_TOKENS)
    (root / "lm_eval_tasks" / "toy_gen_parity.yaml").write_text(lm_eval_yaml, encoding="utf-8")
    llmlab_yaml = LLMLAB_GEN_YAML.format(data=data, max_new=MAX_GEN_TOKENS)
    (root / "llmlab_gen_task.yaml").write_text(llmlab_yaml, encoding="utf-8")
    return root


def how_it_ends(loaded, prompt: list[int]) -> str:
    """What ends the greedy continuation of `prompt`: "newline" (the stop string), "eos" (with text between EOS and
    the next newline, that a harness ignoring EOS would keep), "eos_alone" or "length"."""
    sampling = SamplingConfig(max_new_tokens=MAX_GEN_TOKENS, temperature=0.0)
    new = generate_batch(loaded.model, [prompt], sampling=sampling)[0][len(prompt) :].tolist()  # no EOS, no stops
    text = [loaded.tokenizer.decode([t], skip_special_tokens=True) for t in new]
    newline = next((i for i, t in enumerate(text) if "\n" in t), len(new))
    eos = new.index(loaded.tokenizer.eos_id) if loaded.tokenizer.eos_id in new else len(new)
    if eos < newline:
        return "eos" if "".join(text[eos:]).split("\n")[0] else "eos_alone"
    return "newline" if newline < len(new) else "length"


@pytest.mark.slow
@pytest.mark.parametrize("num_fewshot", [0, 2])
def test_generations_equal_lm_eval(gen_setup, num_fewshot, tmp_path):
    root = gen_setup
    theirs = run_lm_eval(root, num_fewshot, model="gen_model", task="toy_gen_parity")
    loaded = load_for_inference(root / "gen_model")
    lm = ModelLM(loaded.model, loaded.tokenizer, batch_size=3)
    assert lm.max_length == GEN_CONTEXT
    evaluate(lm, [load_task(root / "llmlab_gen_task.yaml")], num_fewshot=num_fewshot, samples_path=tmp_path)
    samples = [json.loads(line) for line in (tmp_path / "samples_toy_gen_parity.jsonl").read_text().splitlines()]
    prompts = [s["prompt"] for s in samples]
    assert prompts == theirs["contexts"]
    assert [s["generation"] for s in samples] == theirs["generations"]
    assert theirs["filtered_generations"] == theirs["generations"]
    # the comparison covers left truncation, the stop string, EOS and running out of tokens
    keep = GEN_CONTEXT - MAX_GEN_TOKENS
    prompt_ids = [loaded.tokenizer.encode(p) for p in prompts]
    assert any(len(ids) > keep for ids in prompt_ids) == (num_fewshot == 2), [len(ids) for ids in prompt_ids]
    assert {"newline", "eos", "length"} <= {how_it_ends(loaded, ids[-keep:]) for ids in prompt_ids}
