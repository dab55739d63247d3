"""NER entity-F1 and QA EM/F1 of SmolLM2-135M-Instruct prompted with the `llmlab app` templates.

The prompting side of "MiniLM-head vs SmolLM2 prompting" (docs/applications.md): the `ner` and `qa` templates
(`llmlab.apps`: system prompt + worked examples, greedy decoding) run over the first --limit records of the
same test files the MiniLM heads are scored on (`llmlab data ner|qa`, built by `llmlab.data.nlp_sets`), and
scored with the same metrics:
- NER: the reply's entity names are placed in the record's tokens (`llmlab.apps.spans.bio_tags`: every
  occurrence, longest first) and scored with seqeval's entity-level micro F1 against the gold BIO tags; a reply
  that does not parse counts as "no entities" (its gold entities are all missed) and is counted in
  `parse_errors`;
- QA: SQuAD exact match and token F1 (`llmlab.eval.metrics.qa`; Chinese by characters).
`--constrain` masks decoding with the ner template's JSON Schema (`llmlab.serve.structured`), so every reply
parses; both settings are reported when `--constrain both`. `--head-ner RUN` / `--head-qa RUN` also score a
fine-tuned encoder head (`llmlab finetune task=...`) on the same records (the side-by-side table).

    python benchmarks/app_prompting.py --limit 100 --constrain both \\
        --ner /work/nlp-data/ner-en/test.jsonl --ner /work/nlp-data/ner-zh/test.jsonl \\
        --qa /work/nlp-data/qa-en/test.jsonl --qa /work/nlp-data/qa-zh/test.jsonl

Prints progress and a table on stderr, then ONE JSON object on the last line of stdout. No timing is reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def read_records(path: Path, limit: int) -> list[dict[str, Any]]:
    records = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                records.append(json.loads(line))
            if len(records) == limit:
                break
    return records


def lang_of(records: list[dict[str, Any]]) -> str:
    from llmlab.apps import detect_lang

    text = " ".join(r.get("text") or r.get("context") or "".join(r["tokens"]) for r in records[:20])
    return detect_lang(text)


def entity_f1(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """seqeval entity-level micro precision/recall/F1 (the metric the MiniLM head is scored with)."""
    try:
        from llmlab.eval.metrics.ner import entity_scores  # helper D's wrapper, once merged
    except ImportError:
        entity_scores = None
    if entity_scores is not None:
        scores = entity_scores(predicted, gold)
        return {key: scores[key] for key in ("precision", "recall", "f1")}
    from seqeval.metrics import f1_score, precision_score, recall_score

    return {
        "precision": float(precision_score(gold, predicted)),
        "recall": float(recall_score(gold, predicted)),
        "f1": float(f1_score(gold, predicted)),
    }


def run_ner(runner: Any, records: list[dict[str, Any]], constrain: bool) -> tuple[dict[str, Any], list[dict]]:
    from llmlab.apps import bio_tags, get_template, joiner_for, prepare_input, run_task

    template = get_template("ner")
    lang = lang_of(records)
    predicted, samples, errors = [], [], 0
    for i, record in enumerate(records):
        joiner = joiner_for(record["tokens"])
        text = record.get("text") or joiner.join(record["tokens"])  # names are then placed in the joined tokens
        app_input = prepare_input(template, {"text": text}, lang=lang)
        processors = grammar(runner, template, app_input) if constrain else []
        result = run_task(template, app_input, runner.complete, template.sampling, processors)
        entities = result.result if result.error is None else {}
        errors += result.error is not None
        predicted.append(bio_tags(record["tokens"], entities, joiner))
        if i < 3 or (result.error is not None and errors <= 2):
            samples.append({"text": text, "gold": record.get("entities"), "reply": result.output})
        if (i + 1) % 10 == 0:
            log(f"  ner {lang}: {i + 1}/{len(records)} ({errors} parse errors)")
    scores = entity_f1([r["tags"] for r in records], predicted)
    return {"lang": lang, "n": len(records), "parse_errors": errors, **scores}, samples


def run_qa(runner: Any, records: list[dict[str, Any]]) -> tuple[dict[str, Any], list[dict]]:
    from llmlab.apps import get_template, prepare_input, run_task
    from llmlab.eval.metrics.qa import exact_match, token_f1

    template = get_template("qa")
    lang = lang_of(records)
    em = f1 = 0.0
    samples = []
    for i, record in enumerate(records):
        fields = {"text": record["context"], "question": record["question"]}
        result = run_task(template, prepare_input(template, fields, lang=lang), runner.complete, template.sampling)
        gold = record["answers"]["text"]
        em += exact_match(result.output, gold, lang)
        f1 += token_f1(result.output, gold, lang)
        if i < 3:
            samples.append({"question": record["question"], "gold": gold, "reply": result.output})
        if (i + 1) % 10 == 0:
            log(f"  qa {lang}: {i + 1}/{len(records)} (EM so far {em / (i + 1):.3f})")
    return {"lang": lang, "n": len(records), "em": em / len(records), "f1": f1 / len(records)}, samples


def run_head(path: Path, kind: str, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The fine-tuned encoder head's scores on the same records."""
    from llmlab.eval.metrics.qa import exact_match, token_f1
    from llmlab.recipes.finetune_task import load_task_model

    model = load_task_model(path)
    lang = lang_of(records)
    if kind == "ner":
        predictions = model.predict([{"tokens": r["tokens"]} for r in records])
        scores = entity_f1([r["tags"] for r in records], [p["tags"] for p in predictions])
        return {"lang": lang, "n": len(records), **scores}
    predictions = model.predict([{"context": r["context"], "question": r["question"]} for r in records])
    answers = [p["answer"] for p in predictions]
    em = sum(exact_match(a, r["answers"]["text"], lang) for a, r in zip(answers, records, strict=True))
    f1 = sum(token_f1(a, r["answers"]["text"], lang) for a, r in zip(answers, records, strict=True))
    return {"lang": lang, "n": len(records), "em": em / len(records), "f1": f1 / len(records)}


def grammar(runner: Any, template: Any, app_input: Any) -> list[Any]:
    from llmlab.apps.parse import decoding_schema
    from llmlab.serve.structured import build_processor

    schema = decoding_schema(template, app_input.labels)
    response_format = {"type": "json_schema", "json_schema": {"name": template.name, "schema": schema}}
    return [build_processor(runner.tokenizer, response_format, stop_ids=runner.stop_ids)]


def plot(results: list[Path], png: Path) -> dict[str, Any]:
    """One bar chart from several result files: F1 per test set, the MiniLM head beside SmolLM2 prompting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for path in results for kind in ("ner", "qa") for row in json.loads(path.read_text())[kind]]
    sets = sorted({(("NER" if "em" not in r else "QA") + " " + r["lang"], r["n"]) for r in rows})
    systems = [("minilm-head", "MiniLM + head (fine-tuned)"), ("smollm2-prompt", "SmolLM2-135M prompted")]
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for k, (key, label) in enumerate(systems):
        values = []
        for name, n in sets:
            match = [r for r in rows if r["system"].startswith(key) and r["n"] == n and not r.get("constrained")
                     and ("NER" if "em" not in r else "QA") + " " + r["lang"] == name]  # fmt: skip
            values.append(match[0]["f1"] if match else 0.0)
        bars = ax.bar([i + (k - 0.5) * 0.38 for i in range(len(sets))], values, 0.38, label=label)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(range(len(sets)), [f"{name} (n={n})" for name, n in sets])
    ax.set_ylabel("F1 (NER: entity, QA: SQuAD token)")
    ax.set_ylim(0, 1.3)
    ax.legend(loc="upper center", ncols=2, fontsize=8)
    ax.set_title("Same test records: fine-tuned encoder head vs prompting a 135M chat model", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    return {"figure": str(png), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ner", type=Path, action="append", default=[], help="NER test JSONL (tokens, tags)")
    parser.add_argument("--qa", type=Path, action="append", default=[], help="QA test JSONL (SQuAD format)")
    parser.add_argument("--limit", type=int, default=100, help="records per file (the first N)")
    parser.add_argument("--constrain", choices=("no", "yes", "both"), default="both")
    parser.add_argument("--head-ner", type=Path, action="append", default=[], help="a NER head per --ner file")
    parser.add_argument("--head-qa", type=Path, action="append", default=[], help="a QA head per --qa file")
    parser.add_argument("--heads-only", action="store_true", help="score only the --head-* models (no SmolLM2)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plot", type=Path, help="only draw this PNG from the --results files of earlier runs")
    parser.add_argument("--results", type=Path, action="append", default=[], help="a JSON line printed by a run")
    args = parser.parse_args()
    if args.plot is not None:
        print(json.dumps(plot(args.results, args.plot), ensure_ascii=False))
        return
    torch.set_num_threads(args.threads)
    from llmlab.apps import ChatRunner
    from llmlab.hub import load_for_inference

    report: dict[str, Any] = {"limit": args.limit, "ner": [], "qa": [], "samples": {}}
    if args.heads_only:
        args.ner, args.qa = args.ner if args.head_ner else [], args.qa if args.head_qa else []
    else:
        loaded = load_for_inference(None)
        runner = ChatRunner(loaded.model, loaded.tokenizer, loaded.chat_template)
        report["model"] = loaded.source
    settings = [] if args.heads_only else {"no": [False], "yes": [True], "both": [False, True]}[args.constrain]
    for path in args.ner:
        records = read_records(path, args.limit)
        for constrain in settings:
            scores, samples = run_ner(runner, records, constrain)
            report["ner"].append({"file": str(path), "system": "smollm2-prompt", "constrained": constrain, **scores})
            report["samples"][f"ner-{scores['lang']}{'-constrained' if constrain else ''}"] = samples
    for path in args.qa if settings else []:
        scores, samples = run_qa(runner, read_records(path, args.limit))
        report["qa"].append({"file": str(path), "system": "smollm2-prompt", **scores})
        report["samples"][f"qa-{scores['lang']}"] = samples
    for kind, heads, files in (("ner", args.head_ner, args.ner), ("qa", args.head_qa, args.qa)):
        for head, path in zip(heads, files, strict=False):
            scores = run_head(head, kind, read_records(path, args.limit))
            report[kind].append({"file": str(path), "system": f"minilm-head ({head})", **scores})
    for row in report["ner"] + report["qa"]:
        metric = f"F1 {row['f1']:.3f}" + (f"  EM {row['em']:.3f}" if "em" in row else "")
        setting = " constrained" if row.get("constrained") else ""
        errors = f"  parse errors {row['parse_errors']}" if "parse_errors" in row else ""
        log(f"{row['system'] + setting:<40} {row['lang']}  n={row['n']}  {metric}{errors}")
    print(json.dumps(report, ensure_ascii=False))


if __name__ == "__main__":
    main()
