"""Run lm-evaluation-harness (`simple_evaluate`, model "hf") on a Hugging Face folder and a local task YAML, and
print JSON (one line, last on stdout): for a multiple-choice task acc/acc_norm and every document's per-choice
log-likelihoods, for a generate_until task every document's generation (lm-eval's raw response and the filtered
one); for both every document's context.

    python lm_eval_parity.py MODEL_DIR TASK_DIR TASK_NAME [NUM_FEWSHOT] [LIMIT]

Used by the parity test in a subprocess (with HF_HUB_OFFLINE / HF_DATASETS_OFFLINE and a private HF_HOME),
and by benchmarks/lm_eval_parity.py for the SmolLM2 parity run.
"""

from __future__ import annotations

import json
import sys
import time


def main(argv: list[str]) -> None:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    model_dir, task_dir, task_name = argv[:3]
    num_fewshot = int(argv[3]) if len(argv) > 3 else 0
    limit = int(argv[4]) if len(argv) > 4 else None
    start = time.perf_counter()
    out = simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=float32",
        tasks=[task_name],
        num_fewshot=num_fewshot,
        limit=limit,
        batch_size=4,
        device="cpu",
        log_samples=True,
        task_manager=TaskManager(include_path=task_dir),
    )
    seconds = time.perf_counter() - start
    metrics = out["results"][task_name]
    samples = sorted(out["samples"][task_name], key=lambda s: s["doc_id"])
    result: dict = {
        "seconds": seconds,
        "contexts": [
            s["arguments"][0][0] if isinstance(s["arguments"], list) else s["arguments"]["gen_args_0"]["arg_0"]
            for s in samples
        ],
    }
    if "acc,none" in metrics:
        result |= {
            "acc": metrics["acc,none"],
            "acc_norm": metrics["acc_norm,none"],
            "loglikelihoods": [[float(r[0]) for r in s["filtered_resps"]] for s in samples],
        }
    else:  # generate_until: one response per document
        result |= {
            "generations": [s["resps"][0][0] for s in samples],
            "filtered_generations": [s["filtered_resps"][0] for s in samples],
            "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
