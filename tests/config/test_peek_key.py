"""`llmlab.config.peek_key`: one top-level key read before any config loads (the dispatch of pretrain/finetune)."""

from __future__ import annotations

from llmlab.config import peek_key


def test_last_override_wins_over_the_yaml(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: seq2seq\nother: 1\n", encoding="utf-8")
    assert peek_key(path, [], "task") == "seq2seq"
    assert peek_key(path, ["task=ner ", "x.task=y"], "task") == "ner"  # stripped; a nested key is not it
    assert peek_key(path, ["task=a", "task=b"], "task") == "b"
    assert peek_key(path, ["task="], "task") is None  # an empty override clears it
    assert peek_key(None, [], "task") is None and peek_key(tmp_path / "missing.yaml", [], "task") is None
    path.write_text("task: [unclosed\n", encoding="utf-8")
    assert peek_key(path, [], "task") is None  # left to load_config to report
