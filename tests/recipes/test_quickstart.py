"""`llmlab quickstart --fast`: the whole pipeline end to end, through the real CLI."""

import json
import subprocess
import sys

from llmlab.train.logging import read_metrics


def test_quickstart_fast_leaves_a_complete_run_folder(tmp_path):
    run = tmp_path / "qs"
    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "quickstart", "--fast", "--out", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "report.md", "loss_curve.png", "quickstart.json"):
        assert (run / name).is_file(), name
    for name in ("model.safetensors", "model_config.json", "tokenizer.json", "trainer_state.pt"):
        assert (run / "checkpoints" / "last" / name).is_file(), name
    for name in ("train.bin", "val.bin", "meta.json", "tokenizer.json", "report.json"):
        assert (run / "data" / name).is_file(), name
    assert not (run / "source").exists()  # the corpus excerpt is temporary

    losses = [r["loss"] for r in read_metrics(run / "metrics.jsonl") if r.get("loss") is not None]
    assert losses[-1] < losses[0] - 0.5  # it learned something in 30 steps

    result = json.loads((run / "quickstart.json").read_text())
    ppl = result["perplexity"]
    assert 1.0 < ppl["perplexity"] < result["prepare"]["vocab_size"]  # better than uniform guessing
    report = (run / "report.md").read_text()
    assert "loss_curve.png" in report and "ROMEO:" in report
    assert (run / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / ".llmlab-output").is_file()  # a later `quickstart --out` may replace it


def test_quickstart_never_writes_into_a_foreign_folder(tmp_path, capsys):
    import pytest

    from llmlab.cli.main import main

    out = tmp_path / "thesis"
    (out / "source").mkdir(parents=True)
    (out / "thesis.tex").write_text("\\documentclass{article}")
    (out / "source" / "chapter1.tex").write_text("\\chapter{One}")
    with pytest.raises(SystemExit) as exc:
        main(["quickstart", "--fast", "--out", str(out)])
    assert exc.value.code == 2
    assert "is a non-empty folder that llmlab did not create" in capsys.readouterr().err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["source", "source/chapter1.tex", "thesis.tex"]
