"""`evaluate(lm, tasks)`: build every document's prompt, ask the model, score, and report means with standard errors.

Multiple-choice tasks score each choice by its log-likelihood after the context (Brown et al. 2020,
https://arxiv.org/abs/2005.14165), as lm-evaluation-harness does:

- `acc`: the choice with the highest log-likelihood is right;
- `acc_norm`: the highest log-likelihood per character of the choice text (lm-eval's length normalisation);
- `macro_f1`: macro-averaged F1 of the `acc` predictions over the gold classes (scikit-learn);
- `ece`: expected calibration error of the softmax over the choices' log-likelihoods (Guo et al. 2017,
  https://arxiv.org/abs/1706.04599), confidence = the predicted choice's probability.

Generate-until tasks decode greedily and compare the generation with the reference(s): `exact_match` and `f1`
(SQuAD normalisation, per document), corpus `bleu` and `chrf` (sacrebleu) and `rouge1/rouge2/rougeL`.

Standard errors: the sample standard error of the mean for per-document scores (acc, acc_norm, exact_match,
f1, rouge), a bootstrap over documents for corpus-level ones (macro_f1, ece, bleu, chrf), as lm-eval does.

Ensembles that vote: an `EvalLM` with a `vote_choices(groups) -> list[int]` method (one group of
(context, continuation) requests per document) picks each document's `acc` prediction itself.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmlab.eval.harness.lm import EvalLM
from llmlab.eval.harness.prompts import (
    FewshotSampler,
    build_context,
    doc_to_choice,
    doc_to_target,
    gold_index,
)
from llmlab.eval.harness.results import write_samples
from llmlab.eval.harness.task import Doc, TaskConfig, load_documents

BOOTSTRAP_ITERS = 1000


def _argmax(values: Sequence[float]) -> int:
    """Index of the largest value, the first on ties (numpy's argmax)."""
    return max(range(len(values)), key=lambda i: (values[i], -i))


def softmax(values: Sequence[float]) -> list[float]:
    """Probabilities from log-likelihoods (stable)."""
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def _with_stderr(name: str, mean_and_stderr: tuple[float, float]) -> dict[str, float]:
    return {name: mean_and_stderr[0], f"{name}_stderr": mean_and_stderr[1]}


def _corpus(name: str, metric: Any, n: int, iters: int) -> dict[str, float]:
    """A corpus metric `metric(indices)` on all documents, and its bootstrap standard error."""
    from llmlab.eval.metrics import bootstrap_stderr

    value = metric(list(range(n)))
    stderr = bootstrap_stderr(metric, n, iters=iters) if n > 1 else math.nan
    return {name: value, f"{name}_stderr": stderr}


def contexts_for(
    task: TaskConfig, docs: list[Doc], pool: list[Doc], num_fewshot: int, *, pool_is_test: bool
) -> list[str]:
    """The prompt of every document, with `num_fewshot` examples drawn from `pool` (never the document).

    `pool_is_test`: the pool is the task's (unlimited) test documents, so each draw takes one more and drops the
    document itself (lm-eval's rule when the few-shot split is the test split).
    """
    sampler = FewshotSampler(pool, task.fewshot_seed, excludes_eval_doc=pool_is_test)
    return [build_context(task, doc, sampler.sample(num_fewshot, doc)) for doc in docs]


def run_multiple_choice(
    lm: EvalLM, task: TaskConfig, docs: list[Doc], contexts: list[str], iters: int = BOOTSTRAP_ITERS
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics and per-document records of a multiple-choice task."""
    from llmlab.eval.metrics import expected_calibration_error, macro_f1, mean_stderr

    choices = [doc_to_choice(task, doc) for doc in docs]
    golds = [gold_index(task, doc, c) for doc, c in zip(docs, choices, strict=True)]
    groups = [[(ctx, task.target_delimiter + c) for c in cs] for ctx, cs in zip(contexts, choices, strict=True)]
    flat = [req for group in groups for req in group]
    answers = iter(lm.loglikelihood(flat))
    scored = [[next(answers) for _ in group] for group in groups]
    vote = getattr(lm, "vote_choices", None)
    preds = vote(groups) if callable(vote) else [_argmax([ll for ll, _ in s]) for s in scored]
    records, confidences = [], []
    for i, (doc, cs, gold, s) in enumerate(zip(docs, choices, golds, scored, strict=True)):
        lls = [ll for ll, _ in s]
        pred_norm = _argmax([ll / len(c) for ll, c in zip(lls, cs, strict=True)])
        probs = softmax(lls)
        confidences.append(probs[preds[i]])
        records.append({
            "doc_id": i, "doc": doc, "prompt": contexts[i], "choices": cs, "gold": gold, "loglikelihoods": lls,
            "is_greedy": [g for _, g in s], "probs": probs, "pred": preds[i], "pred_norm": pred_norm,
            "acc": float(preds[i] == gold), "acc_norm": float(pred_norm == gold),
        })  # fmt: skip
    correct = [r["acc"] == 1.0 for r in records]
    metrics: dict[str, float] = {}
    for name in task.metrics:
        if name in ("acc", "acc_norm"):
            metrics |= _with_stderr(name, mean_stderr([r[name] for r in records]))
        elif name == "macro_f1":
            metrics |= _corpus(
                name, lambda ix: macro_f1([preds[i] for i in ix], [golds[i] for i in ix]), len(docs), iters
            )
        elif name == "ece":
            ece = lambda ix: expected_calibration_error([confidences[i] for i in ix], [correct[i] for i in ix])  # noqa: E731
            metrics |= _corpus(name, ece, len(docs), iters)
    return metrics, records


def run_generate_until(
    lm: EvalLM, task: TaskConfig, docs: list[Doc], contexts: list[str], iters: int = BOOTSTRAP_ITERS
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics and per-document records of a generate-until task."""
    from llmlab.eval.metrics import bleu, chrf, exact_match, mean_stderr, rouge, token_f1

    targets = [doc_to_target(task, doc) for doc in docs]
    refs: list[list[str]] = [
        [str(t) for t in target] if isinstance(target, list) else [str(target)] for target in targets
    ]
    outputs = lm.generate_until([(ctx, dict(task.generation_kwargs)) for ctx in contexts])
    lang = task.lang
    records = []
    for i, (doc, ctx, ref, out) in enumerate(zip(docs, contexts, refs, outputs, strict=True)):
        hyp = out.strip()
        records.append({
            "doc_id": i, "doc": doc, "prompt": ctx, "targets": ref, "generation": out,
            "exact_match": exact_match(hyp, ref, lang=lang), "f1": token_f1(hyp, ref, lang=lang),
        })  # fmt: skip
    hyps = [r["generation"].strip() for r in records]
    metrics: dict[str, float] = {}
    for name in task.metrics:
        if name in ("exact_match", "f1"):
            metrics |= _with_stderr(name, mean_stderr([r[name] for r in records]))
        elif name in ("bleu", "chrf"):
            fn = bleu if name == "bleu" else chrf
            corpus = lambda ix, fn=fn: fn([hyps[i] for i in ix], [refs[i] for i in ix], lang=lang)  # noqa: E731
            metrics |= _corpus(name, corpus, len(docs), iters)
        elif name == "rouge":
            per_doc = [rouge([h], [r], lang=lang) for h, r in zip(hyps, refs, strict=True)]
            for key in ("rouge1", "rouge2", "rougeL"):
                metrics |= _with_stderr(key, mean_stderr([scores[key] for scores in per_doc]))
                for record, scores in zip(records, per_doc, strict=True):
                    record[key] = scores[key]
    return metrics, records


TaskDocuments = dict[str, tuple[list[Doc], list[Doc]]]
"""task name -> (test documents, few-shot pool)."""


def load_task_documents(tasks: list[TaskConfig], num_fewshot: int | None = None) -> TaskDocuments:
    """Every task's documents, checked before any model runs: the data files/builders load, and the few-shot
    pool holds `num_fewshot` (else each task's own count) examples besides the scored document."""
    documents: TaskDocuments = {}
    for task in tasks:
        docs, pool = load_documents(task)
        shots = task.num_fewshot if num_fewshot is None else num_fewshot
        available = len(pool) - 1 if pool is docs else len(pool)
        if shots > available:
            raise ValueError(
                f"task {task.name}: {shots}-shot needs {shots} few-shot examples, its pool has {available}; "
                "lower --num-fewshot or give the task more few-shot documents"
            )
        documents[task.name] = (docs, pool)
    return documents


def evaluate(
    lm: EvalLM,
    tasks: list[TaskConfig],
    *,
    num_fewshot: int | None = None,
    limit: int | None = None,
    samples_path: Path | None = None,
    bootstrap_iters: int = BOOTSTRAP_ITERS,
    documents: TaskDocuments | None = None,
) -> dict[str, dict[str, Any]]:
    """Run every task; per task `{metric: value, metric_stderr: value, "n": docs, "num_fewshot": k}`.

    Args:
        lm: the model (or ensemble) under test.
        tasks: validated task configs (`llmlab.eval.harness.task.load_task`).
        num_fewshot: examples per prompt for every task (None: each task's own `num_fewshot`).
        limit: evaluate only the first `limit` documents of each task.
        samples_path: a folder to write `samples_<task>.jsonl` into (None: do not write samples).
        bootstrap_iters: resamples for the standard errors of corpus metrics.
        documents: the tasks' documents from `load_task_documents` (None: loaded and checked here, before the
            first task runs).
    """
    if limit is not None and limit < 1:
        raise ValueError(f"--limit must be a positive number of documents, got {limit}")
    documents = documents if documents is not None else load_task_documents(tasks, num_fewshot)
    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        docs, pool = documents[task.name]
        pool_is_test = pool is docs
        docs = docs[:limit] if limit is not None else docs
        shots = task.num_fewshot if num_fewshot is None else num_fewshot
        contexts = contexts_for(task, docs, pool, shots, pool_is_test=pool_is_test)
        run = run_multiple_choice if task.output_type == "multiple_choice" else run_generate_until
        metrics, records = run(lm, task, docs, contexts, bootstrap_iters)
        results[task.name] = {"num_fewshot": shots, "n": len(docs), "output_type": task.output_type, **metrics}
        if samples_path is not None:
            write_samples(samples_path, task.name, records)
    return results
