"""`llmlab app` end to end: a tiny random chat model (fast; replies are noise), then the real SmolLM2 on short inputs.

A random model's reply does not parse, which exercises the failure paths (one-line error + exit 2, `parse_error`
per record in a batch); `--constrain` must make even a random model's reply parse.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import run_cli
from tiny_models import tiny_llama

import llmlab.hub


@pytest.fixture(scope="module")
def tiny_chat_model(tmp_path_factory) -> Path:
    """A tiny random Llama with a small byte-level BPE tokenizer (no chat template of its own: --template chatml)."""
    from llmlab.tokenizers import train_tokenizer_from_iterator

    texts = ['{"PER": ["Ada"], "LOC": [], "ORG": []}', "Text: Ada met Bob in London.\nJSON:", "人名 地名 机构名"] * 5
    tokenizer = train_tokenizer_from_iterator("bpe", texts, vocab_size=300)
    folder = tmp_path_factory.mktemp("tiny-chat")
    tiny_llama(0, vocab_size=tokenizer.vocab_size, max_position_embeddings=4096).save_pretrained(folder)
    tokenizer.save(folder)
    return folder


def app(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    return run_cli(["app", *args], capsys)


def test_list_names_every_task(capsys) -> None:
    code, out, _ = app(["list"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 11 and lines[0].startswith("summarize ") and any(line.startswith("ner ") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nerr", "--text", "x"], "unknown app task 'nerr'; choose one of summarize"),
        (["ner"], "got no input; give exactly one of --text TEXT, --file FILE or --jsonl FILE --out FILE"),
        (["ner", "--text", "x", "--file", "f.txt"], "--text and --file together"),
        (["ner", "--jsonl", "in.jsonl"], "--jsonl IN and --out OUT go together"),
        (["ner", "--file", "missing.txt"], "input file not found: missing.txt"),
        (["classify", "--text", "x"], "needs the labels to choose from"),
        (["qa", "--text", "A passage."], "app task 'qa' needs a question"),
        (["story", "--text", "x", "--constrain"], "--constrain applies to structured tasks"),
        (["ner", "--text", "x", "--lang", "fr"], "unknown language 'fr'"),
        (["ner", "--text", "x", "--temperature", "-1"], "temperature"),
        (["ner", "--text", "x", "--device", "tpu9"], "tpu9"),
    ],
)
def test_bad_input_fails_before_any_model_loads(args, message, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(llmlab.hub, "load_for_inference", lambda *a, **k: pytest.fail("the model was loaded"))
    code, out, err = app(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("llmlab: error: ") and message in err and err.count("\n") == 1


def test_batch_refuses_an_existing_out_and_bad_records(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(llmlab.hub, "load_for_inference", lambda *a, **k: pytest.fail("the model was loaded"))
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    source.write_text('{"text": "Ada"}\n{"txt": "Bob"}\n', encoding="utf-8")
    code, _, err = app(["ner", "--jsonl", str(source), "--out", str(out)], capsys)
    assert code == 2 and f"{source} line 2 has no text for app task 'ner'" in err
    out.write_text("keep me\n", encoding="utf-8")
    code, _, err = app(["ner", "--jsonl", str(source), "--out", str(out)], capsys)
    assert code == 2 and "already exists; choose another --out or pass --overwrite" in err
    assert out.read_text(encoding="utf-8") == "keep me\n"
    code, _, err = app(["ner", "--jsonl", str(source), "--out", str(out), "--overwrite"], capsys)
    assert code == 2 and "is not a file llmlab app wrote" in err  # --overwrite replaces only an app output
    assert out.read_text(encoding="utf-8") == "keep me\n"


def test_tiny_model_reply_that_does_not_parse_is_one_line_exit_2(tiny_chat_model, capsys) -> None:
    args = [
        "ner",
        "--text",
        "Ada met Bob in London.",
        "--model",
        str(tiny_chat_model),
        "--template",
        "chatml",
        "-n",
        "8",
    ]
    code, out, err = app(args, capsys)
    assert code == 2 and out == ""
    assert err.startswith("llmlab: error: ner: the model's reply is not JSON") and "raw output: " in err
    assert err.count("\n") == 1


def test_tiny_model_free_text_and_json_output(tiny_chat_model, capsys, tmp_path) -> None:
    base = ["--model", str(tiny_chat_model), "--template", "chatml", "-n", "5"]
    code, out, _ = app(["story", "--text", "a cat", "--seed", "1", *base], capsys)
    assert code == 0
    code, again, _ = app(["story", "--text", "a cat", "--seed", "1", *base], capsys)
    assert again == out  # a seeded sample is reproducible
    source = tmp_path / "doc.txt"
    source.write_text("艾达遇见了鲍勃。\n", encoding="utf-8")
    code, out, _ = app(["summarize", "--file", str(source), "--json", *base], capsys)
    record = json.loads(out)
    assert code == 0 and record["task"] == "summarize" and record["lang"] == "zh"
    assert record["result"] == record["output"]


def test_constrained_decoding_makes_even_a_random_model_parse(tiny_chat_model, capsys) -> None:
    base = ["--model", str(tiny_chat_model), "--template", "chatml", "--constrain"]
    code, out, err = app(["ner", "--text", "Ada met Bob in London.", "-n", "1500", *base], capsys)
    assert code == 0, err
    assert set(json.loads(out)) == {"PER", "LOC", "ORG"}
    code, out, err = app(["classify", "--labels", "yes,no", "--text", "Is it?", "-n", "10", *base], capsys)
    assert code == 0, err
    assert json.loads(out)["label"] in ("yes", "no")


def test_batch_writes_parse_error_per_record_and_goes_on(tiny_chat_model, capsys, tmp_path) -> None:
    source, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    records = [
        {"text": "Ada met Bob.", "id": 1},
        {"tokens": ["张", "三", "在", "北", "京"], "tags": ["O"] * 5, "id": 2},
    ]
    source.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    args = ["ner", "--jsonl", str(source), "--out", str(out), "--model", str(tiny_chat_model), "--template", "chatml"]
    code, _, err = app([*args, "-n", "6"], capsys)
    assert code == 0 and "2 records" in err
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [1, 2]
    assert [row["lang"] for row in rows] == ["en", "zh"]
    assert all(row["parse_error"].startswith("ner: ") and "result" not in row for row in rows)
    code, _, err = app([*args, "-n", "1500", "--constrain", "--overwrite"], capsys)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert code == 0 and all("result" in row for row in rows)
    assert len(rows[1]["predicted_tags"]) == 5  # NER records with tokens get tags too


# ---------------------------------------------------------------------------------------------------- SmolLM2
@pytest.fixture
def default_model_is_the_shared_smollm2(smollm2, smollm2_file, monkeypatch) -> None:
    """`llmlab app` without --model loads the packaged SmolLM2; hand it the suite's already-loaded copy."""
    from llmlab.hub import LoadedModel
    from llmlab.tokenizers.chat import chat_template_from_gguf

    model, tokenizer = smollm2
    loaded = LoadedModel(model, tokenizer, chat_template_from_gguf(smollm2_file.metadata), "SmolLM2-135M-Instruct")

    def load(path, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        assert path is None, "the default model is asked for with None"
        return loaded

    monkeypatch.setattr(llmlab.hub, "load_for_inference", load)


def test_smollm2_classify_and_ner(default_model_is_the_shared_smollm2, capsys) -> None:
    """The packaged SmolLM2-135M-Instruct (the default model): a clear sentiment and a one-name NER input."""
    text = "I loved this movie, it was wonderful!"
    code, out, err = app(["classify", "--labels", "positive,negative", "--text", text], capsys)
    assert code == 0, err
    assert json.loads(out) == {"label": "positive"}
    code, out, err = app(["ner", "--text", "Barack Obama visited Paris.", "--json"], capsys)
    assert code == 0, err
    record = json.loads(out)
    assert record["lang"] == "en" and "Barack Obama" in record["result"]["PER"]
