"""llmlab's task harness vs lm-evaluation-harness (0.4.13) on SmolLM2-135M-Instruct: same scores, and how fast.

The packaged SmolLM2 GGUF is converted once to a Hugging Face folder (`llmlab convert --format hf`, cached in
`--work`); a built-in multiple-choice task's documents are written as JSONL with an equivalent lm-eval task YAML
(`fewshot_split` set, so that lm-eval, like llmlab, never shows a document as its own few-shot example); then
lm-eval's `simple_evaluate(model="hf")` (in a subprocess, offline) and llmlab's `evaluate` score the same folder.
Reported: both accuracies (acc, acc_norm), the largest per-choice log-likelihood difference, whether the prompts
are identical, and the seconds each tool's evaluation took (lm-eval: `simple_evaluate` alone, without its
import; llmlab: loading + `evaluate`), in this one run.

    python benchmarks/lm_eval_parity.py                                  # sentiment_en, 0-shot, 200 docs
    python benchmarks/lm_eval_parity.py --task shakespeare_cloze --num-fewshot 2 --limit 100

Prints a line per tool, then ONE JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from llmlab.eval.harness.lm import ModelLM
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import load_documents, load_task
from llmlab.hub import load_for_inference

ROOT = Path(__file__).resolve().parents[1]
LM_EVAL_SCRIPT = ROOT / "tests" / "eval" / "harness" / "lm_eval_parity.py"


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


def smollm2_hf_folder(work: Path) -> Path:
    """The packaged SmolLM2 as a Hugging Face folder (converted once with `llmlab convert`)."""
    folder = work / "smollm2-hf"
    if not (folder / "config.json").is_file():
        from llmlab.hub import resolve_source

        gguf = resolve_source(None).weights
        cmd = [sys.executable, "-m", "llmlab", "convert", "--from", str(gguf), "--to", str(folder), "--format", "hf"]
        subprocess.run(cmd, check=True, capture_output=True)
    return folder


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
    proc = subprocess.run([sys.executable, str(LM_EVAL_SCRIPT), *args], env=env, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-3000:])
    theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    start = time.perf_counter()
    loaded = load_for_inference(model_dir)
    ours = evaluate(ModelLM(loaded.model, loaded.tokenizer), [task], num_fewshot=num_fewshot, limit=limit,
                    samples_path=work)[task.name]  # fmt: skip
    seconds = time.perf_counter() - start
    samples = [json.loads(line) for line in (work / f"samples_{task.name}.jsonl").read_text().splitlines()]
    diff = max(abs(a - b) for s, t in zip(samples, theirs["loglikelihoods"], strict=True)
               for a, b in zip(s["loglikelihoods"], t, strict=True))  # fmt: skip
    same_prompts = [s["prompt"] for s in samples] == theirs["contexts"]
    print(f"llmlab  acc {ours['acc']:.4f} acc_norm {ours['acc_norm']:.4f} ({seconds:.1f} s)")
    print(f"lm-eval acc {theirs['acc']:.4f} acc_norm {theirs['acc_norm']:.4f} ({theirs['seconds']:.1f} s)")
    print(json.dumps({
        "task": task.name, "num_fewshot": num_fewshot, "n": ours["n"],
        "llmlab": {"acc": ours["acc"], "acc_norm": ours["acc_norm"], "seconds": round(seconds, 2)},
        "lm_eval": {"acc": theirs["acc"], "acc_norm": theirs["acc_norm"], "seconds": round(theirs["seconds"], 2)},
        "max_abs_loglikelihood_diff": diff, "same_prompts": same_prompts,
        "speedup_vs_lm_eval": round(theirs["seconds"] / seconds, 2),
    }))  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", help="a Hugging Face folder (default: the packaged SmolLM2, converted)")
    parser.add_argument("--task", default="sentiment_en", help="a built-in multiple-choice task")
    parser.add_argument("--num-fewshot", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--work", type=Path, default=Path("/tmp/llmlab-bench-lm-eval"))
    a = parser.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    main(a.model_dir or str(smollm2_hf_folder(a.work)), a.task, a.num_fewshot, a.limit)
