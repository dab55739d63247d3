"""llmlab's task harness: YAML tasks, prompts with few-shot examples, an `EvalLM` interface and the runner.

    lm = ModelLM(model, tokenizer)
    results = evaluate(lm, [load_task("sentiment_en")], num_fewshot=5)

Modules: `lm` (EvalLM, ModelLM), `task` (TaskConfig from YAML), `prompts` (templates, few-shot sampling),
`runner` (evaluate), `results` (table, results.json, samples JSONL).
"""

from llmlab.eval.harness.lm import EvalLM, ModelLM

__all__ = ["EvalLM", "ModelLM"]
