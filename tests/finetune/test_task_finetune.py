"""`llmlab finetune task=...` end to end on a tiny random BERT (MiniLM's WordPiece tokenizer): every task
trains, writes summary metrics and a `model/` that `load_task_model` predicts with (the same predictions the run
scored); LoRA merges; `--resume` is bit-identical; dispatch and config errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from finetune_helpers import FAST
from safetensors.torch import load_file

from llmlab.recipes.finetune_task import is_task_model, load_task_model
from llmlab.train.logging import read_metrics
from llmlab.train.task_loop import TaskBatchStream, task_metrics

transformers = pytest.importorskip("transformers")

WORDS = {"good": "positive", "great": "positive", "fine": "positive", "bad": "negative", "awful": "negative",
         "poor": "negative"}  # fmt: skip


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:  # noqa: ANN001
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


def write(path: Path, records: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return str(path)


def records(task: str, n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        word = rng.choice(sorted(WORDS))
        name, city = rng.choice(["Ada", "Bob", "Cleo"]), rng.choice(["Paris", "Oslo", "Rome"])
        if task == "sequence_classification":
            out.append({"text": f"the film was {word}", "label": WORDS[word]})
        elif task == "regression":
            out.append(
                {"text": f"the film was {word}", "label": 1.0 if WORDS[word] == "positive" else -1.0 + 0.1 * i % 3}
            )
        elif task == "token_classification":
            out.append({"tokens": [name, "lives", "in", city], "tags": ["B-PER", "O", "O", "B-LOC"]})
        elif task == "question_answering":
            context = f"{name} lives in {city} and likes tea."
            out.append({"id": str(i), "context": context, "question": f"Where does {name} live?",
                        "answers": {"text": [city], "answer_start": [context.index(city)]}})  # fmt: skip
        elif task == "multiple_choice":
            out.append({"question": f"{name} is", "choices": ["good", "bad"], "label": i % 2})
        else:
            text = f"{name} was born in {city}"
            out.append({"text": text, "head": [0, len(name)], "tail": [text.index(city), len(text)],
                        "label": "born_in" if i % 2 else "lives_in"})  # fmt: skip
    return out


def task_args(task: str, bert_dir: Path, tmp_path: Path, *extra: str) -> list[str]:
    train = write(tmp_path / f"{task}-train.jsonl", records(task, 24, 0))
    test = write(tmp_path / f"{task}-test.jsonl", records(task, 8, 1))
    return ["finetune", f"task={task}", f"base={bert_dir}", f"data.train={train}", f"data.test={test}",
            "data.val_fraction=0.25", "data.max_length=32", "data.doc_stride=8", "train.batch_size=4",
            "train.max_iters=3", "train.eval_interval=2", "optim.lr=1e-3", *FAST, *extra]  # fmt: skip


METRIC = {"sequence_classification": "accuracy", "regression": "pearson", "token_classification": "f1",
          "question_answering": "f1", "multiple_choice": "accuracy", "relation_classification": "accuracy"}  # fmt: skip


@pytest.mark.parametrize("task", list(METRIC))
def test_every_task_trains_saves_and_predicts(task: str, bert_dir, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    code, stdout, err = run_cli([*task_args(task, bert_dir, tmp_path), f"out_dir={out}"], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert f"test_{METRIC[task]}" in summary and f"val_{METRIC[task]}" in summary
    assert f"test_{METRIC[task]}" in stdout
    assert any("val_loss" in r for r in read_metrics(out / "metrics.jsonl"))
    assert is_task_model(out) and is_task_model(out / "model") and not is_task_model(tmp_path)
    from llmlab.io import file_mode

    modes = {f.name: f.stat().st_mode & 0o777 for f in (out / "model").iterdir() if f.is_file()}
    assert set(modes.values()) == {file_mode()}, modes  # the permission policy, head weights included
    tm = load_task_model(out)
    assert tm.task == task
    test = records(task, 8, 1)
    preds = tm.predict(test)
    assert len(preds) == len(test)
    rescored = task_metrics(task, test, preds)  # the saved model predicts what the run scored
    assert rescored[METRIC[task]] == pytest.approx(summary[f"test_{METRIC[task]}"], abs=1e-6)


def test_ner_predict_from_text_gives_char_offsets(bert_dir, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    code, _, err = run_cli([*task_args("token_classification", bert_dir, tmp_path, "train.max_iters=1"),
                            f"out_dir={out}"], capsys)  # fmt: skip
    assert code == 0, err
    (pred,) = load_task_model(out).predict([{"text": "Ada lives in Paris"}])
    assert len(pred["tags"]) == 4
    for ent in pred["entities"]:
        assert "Ada lives in Paris"[ent["start"] : ent["end"]] == ent["text"]


@pytest.mark.parametrize(("method", "extra", "adapter_key"), [("lora", "peft.r=2", "lora_A"), ("ia3", None, "ia3_")])
def test_peft_trains_the_head_and_merges(method, extra, adapter_key, bert_dir, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    args = task_args("sequence_classification", bert_dir, tmp_path, "--method", method, *([extra] if extra else []))
    code, stdout, err = run_cli([*args, f"out_dir={out}"], capsys)
    assert code == 0, err
    saved = load_file(str(out / "checkpoints" / "last" / "trainable.safetensors"))
    assert "classifier.weight" in saved and any(adapter_key in k for k in saved)
    assert not any("encoder.embeddings" in k for k in saved)
    encoder_files = list((out / "model" / "encoder").iterdir())
    assert encoder_files and not (out / "model" / "adapter").exists()
    tm = load_task_model(out)
    assert not any(adapter_key in n for n, _ in tm.model.named_parameters())
    assert summary_of(out)["trainable_params"] < summary_of(out)["total_params"] / 10


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_a_decoder_base_classifies_with_its_last_token(gpt_dir, tmp_path, capsys) -> None:  # noqa: ANN001
    out = tmp_path / "run"
    code, _, err = run_cli([*task_args("sequence_classification", gpt_dir, tmp_path), f"out_dir={out}"], capsys)
    assert code == 0, err
    tm = load_task_model(out)
    assert not tm.model.is_encoder and tm.model.decoder.score.weight.shape[0] == 2
    test = records("sequence_classification", 8, 1)
    assert task_metrics("sequence_classification", test, tm.predict(test))["accuracy"] == pytest.approx(
        summary_of(out)["test_accuracy"]
    )


def test_resume_is_bit_identical(bert_dir, tmp_path, capsys, monkeypatch) -> None:  # noqa: ANN001
    args = task_args("sequence_classification", bert_dir, tmp_path, "train.max_iters=4", "train.save_interval=2")
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'ref'}"], capsys)
    assert code == 0, err
    real, calls = TaskBatchStream.next_batch, [0]

    def killed(self: TaskBatchStream) -> dict:
        calls[0] += 1
        if calls[0] > 3:
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as m:
        m.setattr(TaskBatchStream, "next_batch", killed)
        code, _, _ = run_cli([*args, f"out_dir={tmp_path / 'run'}"], capsys)
    assert code == 130
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume"], capsys)
    assert code == 0, err
    keys = ("iter", "loss", "lr", "grad_norm", "val_loss", "val_accuracy")
    got = [{k: r.get(k) for k in keys} for r in read_metrics(tmp_path / "run" / "metrics.jsonl")]
    want = [{k: r.get(k) for k in keys} for r in read_metrics(tmp_path / "ref" / "metrics.jsonl")]
    assert got == want
    a = load_file(str(tmp_path / "run" / "model" / "head.safetensors"))
    b = load_file(str(tmp_path / "ref" / "model" / "head.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in b)


def test_dispatch_and_errors(bert_dir, tmp_path, capsys) -> None:  # noqa: ANN001
    code, stdout, _ = run_cli(["finetune", "task=token_classification", "data.train=x.jsonl", "--print-config"], capsys)
    assert code == 0 and "task: token_classification" in stdout and "doc_stride" in stdout
    code, stdout, _ = run_cli(
        ["finetune", "data.train=x.jsonl", "--print-config"], capsys
    )  # no task: the SFT config, unchanged
    assert code == 0 and "doc_stride" not in stdout and "template" in stdout
    code, _, err = run_cli(["finetune", "task=ner", "data.train=x.jsonl"], capsys)
    assert code == 2 and "unknown task 'ner'" in err
    code, _, err = run_cli(["finetune", "task=token_classification", "--method", "prefix", "data.train=x"], capsys)
    assert code == 2 and "not available for task heads" in err
    code, _, err = run_cli(["finetune", "task=regression", f"data.train={tmp_path / 'none.jsonl'}"], capsys)
    assert code == 2 and "data file not found" in err


def test_seq2seq_goes_to_the_seq2seq_runner(monkeypatch, capsys) -> None:  # noqa: ANN001
    import sys
    import types

    calls = []
    fake = types.ModuleType("llmlab.recipes.finetune_seq2seq")
    fake.load_seq2seq_config = lambda path, overrides, method: calls.append(("load", overrides, method)) or "CFG"
    fake.finetune_seq2seq = lambda cfg, say: calls.append(("run", cfg))
    monkeypatch.setitem(sys.modules, "llmlab.recipes.finetune_seq2seq", fake)
    code, _, err = run_cli(["finetune", "task=seq2seq", "data.train=x.jsonl", "--method", "full"], capsys)
    assert code == 0, err
    assert calls == [("load", ["task=seq2seq", "data.train=x.jsonl"], "full"), ("run", "CFG")]


def test_regression_metrics_on_one_or_constant_records() -> None:
    """Pearson/Spearman need two records that vary on both sides; otherwise only the MSE is reported (scipy
    raised on a single held-out record, after the run had started)."""
    one = task_metrics("regression", [{"label": 2.0}], [{"score": 1.5}])
    assert one == {"mse": pytest.approx(0.25)}
    flat = task_metrics("regression", [{"label": 1.0}, {"label": 3.0}], [{"score": 2.0}, {"score": 2.0}])
    assert flat == {"mse": pytest.approx(1.0)}
    varied = task_metrics("regression", [{"label": 1.0}, {"label": 3.0}, {"label": 2.0}],
                          [{"score": 1.0}, {"score": 3.0}, {"score": 2.5}])  # fmt: skip
    assert varied["pearson"] > 0.9 and varied["spearman"] == pytest.approx(1.0)
