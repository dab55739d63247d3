"""`llmlab app --model RUN` with fine-tuned encoder heads (`llmlab finetune task=...` on a tiny random BERT):
the head's predictions come out as the app's JSON, and a head cannot run another task."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
from cli_helpers import run_cli

RUN_OPTIONS = ["data.max_length=32", "data.doc_stride=8", "data.val_fraction=0.25", "train.batch_size=4",
               "train.max_iters=1", "train.eval_interval=1", "train.device=cpu", "train.progress=false",
               "train.tensorboard=false"]  # fmt: skip


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    """A tiny random HF BertModel folder with the MiniLM tokenizer files."""
    from llmlab.models.bert import minilm_path

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=30522, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=32, max_position_embeddings=64)  # fmt: skip
    transformers.BertModel(config).save_pretrained(folder)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, folder / name)
    return folder


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def head_run(task: str, records: list[dict], bert_dir: Path, folder: Path, capsys) -> Path:
    data = write(folder / f"{task}.jsonl", records)
    out = folder / f"{task}-run"
    args = ["finetune", f"task={task}", f"base={bert_dir}", f"data.train={data}", f"out_dir={out}", *RUN_OPTIONS]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    return out


def test_ner_and_qa_heads_print_the_apps_json(bert_dir, tmp_path, capsys) -> None:
    ner = [{"tokens": [n, "lives", "in", c], "tags": ["B-PER", "O", "O", "B-LOC"]} for n in ("Ada", "Bob")
           for c in ("Paris", "Oslo", "Rome", "Lima")]  # fmt: skip
    run = head_run("token_classification", ner, bert_dir, tmp_path, capsys)
    code, out, err = run_cli(["app", "ner", "--model", str(run), "--text", "Ada lives in Paris"], capsys)
    assert code == 0, err
    entities = json.loads(out)
    assert set(entities) >= {"PER", "LOC", "ORG"} and all(isinstance(v, list) for v in entities.values())

    source, result = write(tmp_path / "in.jsonl", ner[:3]), tmp_path / "out.jsonl"
    code, _, err = run_cli(["app", "ner", "--model", str(run), "--jsonl", str(source), "--out", str(result)], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in result.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 3 and all(len(row["predicted_tags"]) == 4 and "result" in row for row in rows)

    contexts = [(n, c) for n in ("Ada", "Bob") for c in ("Paris", "Oslo", "Rome", "Lima")]
    qa = [{"id": str(i), "context": f"{n} lives in {c}.", "question": f"Where does {n} live?",
           "answers": {"text": [c], "answer_start": [len(n) + 9]}} for i, (n, c) in enumerate(contexts)]  # fmt: skip
    run = head_run("question_answering", qa, bert_dir, tmp_path, capsys)
    args = ["app", "qa", "--model", str(run), "--text", "Ada lives in Paris.", "--question", "Where?", "--json"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    record = json.loads(out)
    assert isinstance(record["result"], str) and record["result"] in "Ada lives in Paris."

    code, _, err = run_cli(["app", "summarize", "--model", str(run), "--text", "x"], capsys)
    assert code == 2 and "is a question_answering head; it runs `llmlab app qa`, not summarize" in err
    code, _, err = run_cli(["app", "ner", "--model", str(run), "--text", "x"], capsys)
    assert code == 2 and "it runs `llmlab app qa`, not ner" in err
    code, _, err = run_cli([*args, "--temperature", "0.5", "--seed", "1"], capsys)
    assert code == 2 and f"--temperature, --seed set how a chat model decodes; --model {run} is an encoder head" in err
