"""An aligned policy is a fine-tuned run like any other: `generate`, `chat` and `merge` load it, and the run
folder has its report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from align_helpers import FAST
from cli_helpers import run_cli

REPO = Path(__file__).resolve().parents[2]


def test_dpo_policy_loads_in_generate_chat_and_merge(tmp_path, llama_dir, pairs_file, capsys) -> None:
    out = tmp_path / "run"
    args = ["align", "dpo", f"base={llama_dir}", f"data.train={pairs_file}", "peft.r=4", "optim.lr=5e-3",
            "train.batch_size=8", "train.max_iters=6", f"out_dir={out}", *FAST]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "llmlab align dpo" in report and (out / "curves.png").is_file() and (out / "loss_curve.png").is_file()

    greedy = ["--prompt", "The movie 3 was", "--max-new-tokens", "6", "--temperature", "0"]
    code, from_adapter, err = run_cli(["generate", "--checkpoint", str(out), *greedy], capsys)
    assert code == 0, err
    merged = tmp_path / "merged"
    code, _, err = run_cli(["merge", "--adapter", str(out), "--out", str(merged)], capsys)
    assert code == 0, err
    code, from_merged, err = run_cli(["generate", "--checkpoint", str(merged), *greedy], capsys)
    assert code == 0, err
    assert from_merged == from_adapter and from_adapter.strip()  # the merged weights decode the same tokens

    proc = subprocess.run(
        [sys.executable, "-m", "llmlab", "chat", "--checkpoint", str(out), "--temperature", "0",
         "--max-new-tokens", "4"],  # fmt: skip
        input="hello\n", capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1  # one reply for the one piped message
