"""`llmlab embed build|search` end to end on the packaged MiniLM, and its one-line errors before any write."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cli_helpers import run_cli

from llmlab.embeddings import EmbeddingIndex, embed_texts

TEXTS = [
    "The cat sat on the mat.",
    "Stocks fell sharply after the interest rate hike.",
    "I loved this movie, the acting was great.",
    "今天天气很好，适合去公园。",
    "这部电影太好看了，我很喜欢。",
]


def test_build_then_search_txt(tmp_path, capsys) -> None:
    src = tmp_path / "s.txt"
    src.write_text("\n".join(TEXTS[:3]) + "\n\n" + "\n".join(TEXTS[3:]) + "\n", encoding="utf-8")  # a blank line
    code, out, err = run_cli(["embed", "build", "--input", str(src), "--out", str(tmp_path / "idx")], capsys)
    assert code == 0, err
    assert "wrote 5 vectors of 384 dimensions (all-MiniLM-L6-v2)" in out
    index = EmbeddingIndex.load(tmp_path / "idx")
    assert index.texts == TEXTS and index.ids == ["1", "2", "3", "5", "6"]  # line numbers
    assert (tmp_path / "idx" / ".llmlab-output").is_file()
    assert index.meta["pooling"] == "mean" and index.meta["normalize"] is True
    from llmlab.hub import load_for_inference
    from llmlab.models.bert import minilm_path

    loaded = load_for_inference(minilm_path())
    torch.testing.assert_close(index.vectors, embed_texts(loaded.model, loaded.tokenizer, TEXTS), atol=1e-5, rtol=0)
    query = ["a film I enjoyed", "stock market news"]
    code, out, err = run_cli(["embed", "search", "--index", str(tmp_path / "idx"), "-q", query[0], "-q", query[1],
                              "-k", "2", "--json"], capsys)  # fmt: skip
    assert code == 0, err
    answers = [json.loads(line) for line in out.splitlines()]
    assert [a["query"] for a in answers] == query
    assert answers[0]["results"][0]["text"] == TEXTS[2] and answers[1]["results"][0]["text"] == TEXTS[1]
    q = embed_texts(loaded.model, loaded.tokenizer, query)
    assert answers[0]["results"][0]["score"] == pytest.approx(float(q[0] @ index.vectors[2]), abs=1e-5)
    assert [r["rank"] for r in answers[0]["results"]] == [1, 2]
    code, out, err = run_cli(["embed", "build", "--input", str(src), "--out", str(tmp_path / "idx")], capsys)
    assert code == 2 and "already exists (an earlier llmlab output)" in err
    code, out, err = run_cli(["embed", "build", "--input", str(src), "--out", str(tmp_path / "idx"), "--overwrite",
                              "--pooling", "cls", "--no-normalize"], capsys)  # fmt: skip
    assert code == 0, err
    again = EmbeddingIndex.load(tmp_path / "idx")
    assert again.meta["pooling"] == "cls" and again.meta["normalize"] is False
    assert not torch.allclose(again.vectors.norm(dim=1), torch.ones(5), atol=1e-3)


def test_build_jsonl_with_field_and_ids(tmp_path, capsys) -> None:
    src = tmp_path / "r.jsonl"
    src.write_text(
        "".join(json.dumps({"body": t, "key": f"k{i}"}) + "\n" for i, t in enumerate(TEXTS)), encoding="utf-8"
    )
    args = ["embed", "build", "--input", str(src), "--field", "body", "--id-field", "key", "--out", str(tmp_path / "i")]
    code, out, err = run_cli([*args, "--batch-size", "2"], capsys)
    assert code == 0, err
    index = EmbeddingIndex.load(tmp_path / "i")
    assert index.ids == [f"k{i}" for i in range(5)] and index.texts == TEXTS


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("txt", ["--pooling", "sum"], "unknown pooling 'sum'"),
        ("txt", ["--batch-size", "0"], "batch size must be at least 1"),
        ("csv", [], "must be a .txt file"),
        ("missing", [], "not found"),
        ("jsonl-no-field", [], "line 2 has no string field 'text'; pass the right --field"),
        ("jsonl-bad", [], "line 1: not valid JSON"),
        ("empty", [], "holds no texts"),
        ("txt", ["--model", "/nonexistent/encoder"], "--model /nonexistent/encoder not found"),
    ],
)
def test_errors_are_one_line_and_write_nothing(tmp_path, capsys, setup: str, extra: list[str], message: str) -> None:
    contents = {"txt": "hello\n", "csv": "a,b\n", "jsonl-no-field": '{"text": "a"}\n{"body": "b"}\n',
                "jsonl-bad": "not json\n", "empty": "\n\n"}  # fmt: skip
    suffix = {"csv": ".csv", "jsonl-no-field": ".jsonl", "jsonl-bad": ".jsonl"}.get(setup, ".txt")
    src = tmp_path / f"in{suffix}"
    if setup != "missing":
        src.write_text(contents[setup], encoding="utf-8")
    code, out, err = run_cli(["embed", "build", "--input", str(src), "--out", str(tmp_path / "out"), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_output_may_not_be_the_input_and_model_must_be_an_encoder(tmp_path, capsys) -> None:
    from tiny_models import tiny_llama

    from llmlab.models.bert import minilm_path

    src = tmp_path / "s.txt"
    src.write_text("hello\n", encoding="utf-8")
    code, _, err = run_cli(["embed", "build", "--input", str(src), "--out", str(tmp_path)], capsys)
    assert code == 2 and "would overwrite the input" in err
    decoder = tmp_path / "llama"
    tiny_llama(vocab_size=30522).save_pretrained(decoder)
    shutil.copy(minilm_path() / "tokenizer.json", decoder / "tokenizer.json")
    code, _, err = run_cli(
        ["embed", "build", "--input", str(src), "--out", str(tmp_path / "o"), "--model", str(decoder)], capsys
    )
    assert code == 2 and "a llama model is not an encoder" in err
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli(["embed", "search", "--index", str(tmp_path), "-q", "x"], capsys)
    assert code == 2 and "is not an embedding index" in err
