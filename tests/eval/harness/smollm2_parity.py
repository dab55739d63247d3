"""By hand: llmlab's harness vs lm-evaluation-harness on a Hugging Face folder and a built-in multiple-choice task.

    llmlab convert --from <SmolLM2 .gguf> --to /tmp/smol_hf --format hf
    python tests/eval/harness/smollm2_parity.py /tmp/smol_hf sentiment_en [NUM_FEWSHOT] [LIMIT]

Writes the task's documents as JSONL and an equivalent lm-eval task YAML into a temporary folder, runs lm-eval
(`lm_eval_parity.py`, offline) and llmlab's `evaluate` on the same folder, and prints both accuracies and the
largest per-choice log-likelihood difference.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from llmlab.eval.harness.lm import ModelLM
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import load_documents, load_task
from llmlab.hub import load_for_inference

HERE = Path(__file__).resolve().parent


def lm_eval_yaml(task, test: Path, train: Path) -> dict:
    return {
        "task": task.name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(test), "train": str(train)}},
        "test_split": "test",
        "fewshot_split": "train",
        "output_type": "multiple_choice",
        "description": task.description,
        "doc_to_text": task.doc_to_text,
        "doc_to_choice": task.doc_to_choice,
        "doc_to_target": task.doc_to_target,
        "target_delimiter": task.target_delimiter,
        "fewshot_delimiter": task.fewshot_delimiter,
        "fewshot_config": {"sampler": "default"},
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    }


def main(model_dir: str, task_name: str, num_fewshot: int = 0, limit: int | None = None) -> None:
    task = load_task(task_name)
    test, fewshot = load_documents(task)
    work = Path(tempfile.mkdtemp(prefix="parity-"))
    for name, docs in (("test", test), ("train", fewshot)):
        (work / f"{name}.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    (work / "tasks").mkdir()
    spec = lm_eval_yaml(task, work / "test.jsonl", work / "train.jsonl")
    (work / "tasks" / f"{task.name}.yaml").write_text(yaml.safe_dump(spec, allow_unicode=True))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(work / "hf_home")}
    args = [model_dir, str(work / "tasks"), task.name, str(num_fewshot)] + ([str(limit)] if limit else [])
    proc = subprocess.run(
        [sys.executable, str(HERE / "lm_eval_parity.py"), *args], env=env, capture_output=True, text=True
    )
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    loaded = load_for_inference(model_dir)
    ours = evaluate(ModelLM(loaded.model, loaded.tokenizer), [task], num_fewshot=num_fewshot, limit=limit,
                    samples_path=work)[task.name]  # fmt: skip
    samples = [json.loads(line) for line in (work / f"samples_{task.name}.jsonl").read_text().splitlines()]
    diff = max(abs(a - b) for s, t in zip(samples, theirs["loglikelihoods"], strict=True)
               for a, b in zip(s["loglikelihoods"], t, strict=True))  # fmt: skip
    same_prompts = [s["prompt"] for s in samples] == theirs["contexts"]
    print(f"{task.name} {num_fewshot}-shot n={ours['n']}: llmlab acc {ours['acc']:.4f} acc_norm {ours['acc_norm']:.4f}"
          f" | lm-eval acc {theirs['acc']:.4f} acc_norm {theirs['acc_norm']:.4f}"
          f" | max |dll| {diff:.2e} | same prompts: {same_prompts}")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:]))
