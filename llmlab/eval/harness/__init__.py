"""llmlab's task harness: YAML tasks, prompts with few-shot examples, an `EvalLM` interface and the runner.

    lm = ModelLM(model, tokenizer)
    results = evaluate(lm, [load_task("sentiment_en")], num_fewshot=5)   # {task: {metric, metric_stderr, n, ...}}
    print(format_table(results))

Modules: `lm` (EvalLM, ModelLM), `task` (TaskConfig from YAML), `prompts` (templates, few-shot sampling),
`runner` (evaluate), `results` (table, results.json, samples JSONL).
"""

from llmlab.eval.harness.lm import EvalLM, ModelLM
from llmlab.eval.harness.results import format_table, write_results, write_samples
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import TaskConfig, builtin_task_names, load_documents, load_task

__all__ = [
    "EvalLM",
    "ModelLM",
    "TaskConfig",
    "builtin_task_names",
    "evaluate",
    "format_table",
    "load_documents",
    "load_task",
    "write_results",
    "write_samples",
]
