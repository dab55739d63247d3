"""``llmlab align dpo`` end to end on a tiny Llama and the toy pairs (a positive word chosen over a negative one):
it learns (reward accuracy rises, loss falls), the adapter loads in ``llmlab generate``, ``--resume`` is
bit-identical to an uninterrupted run, precomputed reference log-probs equal the per-step reference, and the
reference-free losses run without any reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from align_helpers import FAST
from cli_helpers import run_cli
from safetensors.torch import load_file

from llmlab.data.preference import PairStream
from llmlab.train.logging import read_metrics

COMPARED = ("iter", "loss", "lr", "grad_norm", "rewards_chosen", "rewards_rejected", "rewards_accuracy",
            "rewards_margin", "logps_chosen", "logps_rejected", "val_loss", "val_rewards_accuracy")  # fmt: skip


def dpo_args(base: Path, pairs: Path, *extra: str) -> list[str]:
    return ["align", "dpo", f"base={base}", f"data.train={pairs}", "peft.r=4", "optim.lr=5e-3",
            "train.batch_size=8", "schedule.warmup_iters=2", *FAST, *extra]  # fmt: skip


def curve(run_dir: Path) -> list[dict]:
    return [{k: r[k] for k in COMPARED if k in r} for r in read_metrics(run_dir / "metrics.jsonl")]


def test_dpo_learns_the_preference_and_the_adapter_generates(tmp_path, llama_dir, pairs_file, capsys) -> None:
    out = tmp_path / "run"
    args = dpo_args(llama_dir, pairs_file, "train.max_iters=30", "train.eval_interval=15", f"out_dir={out}")
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["iter"] for r in rows] == list(range(1, 31))
    early, late = rows[:5], rows[-5:]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at the start
    assert mean(late, "loss") < mean(early, "loss") - 0.15
    assert rows[0]["rewards_accuracy"] == 0 and rows[0]["rewards_margin"] == 0  # ties: no reward yet
    assert mean(late, "rewards_accuracy") >= 0.9 > mean(early, "rewards_accuracy")
    assert mean(late, "rewards_margin") > 0.3 and mean(late, "rewards_chosen") > mean(late, "rewards_rejected")
    assert rows[-1]["val_rewards_accuracy"] >= 0.6 and rows[-1]["val_loss"] < 0.69
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "adapters disabled" and summary["loss"] == "sigmoid"
    assert "val_rewards_accuracy" in stdout and f"saved: {out / 'adapter'}" in stdout

    code, gen_out, err = run_cli(
        ["generate", "--checkpoint", str(out), "--prompt", "The movie 3 was", "--max-new-tokens", "4"], capsys
    )
    assert code == 0, err
    assert gen_out.strip()


def killed_after(monkeypatch: pytest.MonkeyPatch, n_batches: int) -> None:
    """Make the pair stream raise KeyboardInterrupt (as if the job were killed) on batch `n_batches + 1`."""
    real, calls = PairStream.next_batch, [0]

    def next_batch(self: PairStream) -> list:
        calls[0] += 1
        if calls[0] > n_batches:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(PairStream, "next_batch", next_batch)


@pytest.mark.parametrize(
    "extra", [["peft.lora_dropout=0.2"], ["method=full", "peft={}", "dpo.precompute_ref_logprobs=true"]]
)
def test_resume_is_bit_identical(tmp_path, llama_dir, pairs_file, monkeypatch, capsys, extra) -> None:
    args = dpo_args(llama_dir, pairs_file, "train.max_iters=6", "train.grad_accum=2", "train.batch_size=4",
                    "train.save_interval=2", "train.eval_interval=3", *extra)  # fmt: skip
    if "method=full" in extra:
        args = [a for a in args if a != "peft.r=4"]
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'ref'}"], capsys)
    assert code == 0, err
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        killed_after(m, 2 * 4)  # dies while drawing step 5's batches; the checkpoint is at step 4
        code, _, err = run_cli([*args, f"out_dir={out}"], capsys)
    assert code == 130, err
    code, stdout, err = run_cli([*args, f"out_dir={out}", "--resume"], capsys)
    assert code == 0, err
    assert "resuming at step 4 of 6" in stdout
    got, want = curve(out), curve(tmp_path / "ref")
    assert [r["iter"] for r in got] == list(range(1, 7)) and got == want  # exact
    weights = "adapter/adapter_model.safetensors"
    if "method=full" in extra:
        weights = next(p.relative_to(out) for p in (out / "model").glob("*.safetensors"))
    w, w_ref = load_file(str(out / weights)), load_file(str(tmp_path / "ref" / weights))
    assert w.keys() == w_ref.keys() and all(torch.equal(w[k], w_ref[k]) for k in w)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_precomputed_reference_equals_the_per_step_reference(tmp_path, llama_dir, pairs_file, capsys, method):
    extra = ["train.max_iters=4", "train.eval_interval=2"]
    extra += ["method=full", "optim.lr=1e-3"] if method == "full" else []
    runs = {}
    for pre in ("false", "true"):
        out = tmp_path / pre
        args = dpo_args(llama_dir, pairs_file, *extra, f"dpo.precompute_ref_logprobs={pre}", f"out_dir={out}")
        code, _, err = run_cli([a for a in args if not (method == "full" and a == "peft.r=4")], capsys)
        assert code == 0, err
        runs[pre] = curve(out)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["reference"].startswith(
            "precomputed" if pre == "true" else ("adapters" if method == "lora" else "frozen")
        )
    assert len(runs["true"]) == len(runs["false"]) == 4
    for a, b in zip(runs["true"], runs["false"], strict=True):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), k
    assert runs["true"][-1]["rewards_margin"] != 0  # the policy moved away from the reference


@pytest.mark.parametrize("loss", ["simpo", "orpo", "ipo", "hinge"])
def test_every_loss_trains(tmp_path, llama_dir, pairs_file, capsys, loss) -> None:
    out = tmp_path / loss
    beta = {"simpo": "2.0", "orpo": "0.1", "ipo": "0.5", "hinge": "0.1"}[loss]
    args = dpo_args(llama_dir, pairs_file, "train.max_iters=12", "train.eval_interval=12", f"dpo.loss={loss}",
                    f"dpo.beta={beta}", "dpo.label_smoothing=0.1" if loss == "simpo" else "dpo.sft_weight=0.0",
                    f"out_dir={out}")  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"].startswith("none") == (loss in ("simpo", "orpo"))


def test_bad_data_fails_before_writing(tmp_path, llama_dir, capsys) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": "b"}\n')
    out = tmp_path / "run"
    code, _, err = run_cli(dpo_args(llama_dir, bad, f"out_dir={out}"), capsys)
    assert code == 2 and "line 2" in err and "rejected" in err
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_ddp_two_ranks_match_single_process(tmp_path, llama_dir, pairs_file) -> None:
    """torchrun with 2 CPU ranks (each 2 pairs of every global 4) trains like one process with 4 pairs."""
    import os
    import subprocess
    import sys

    from llmlab.cli.main import main

    common = dpo_args(llama_dir, pairs_file, "train.max_iters=3", "train.grad_accum=2", "train.eval_interval=3",
                      "train.eval_batch_size=3", "peft.lora_dropout=0.0")  # fmt: skip
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exc:
            main([*[a for a in common if a != "train.batch_size=8"], "train.batch_size=4",
                  f"out_dir={tmp_path / 'single'}"])  # fmt: skip
    finally:
        torch.set_num_threads(n)
    assert exc.value.code == 0
    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmlab"]
    args = [*[a for a in common if a != "train.batch_size=8"], "train.batch_size=2", f"out_dir={tmp_path / 'ddp'}"]
    proc = subprocess.run([*cmd, *args], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300, cwd=root)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    got, want = curve(tmp_path / "ddp"), curve(tmp_path / "single")
    assert [r["iter"] for r in got] == [r["iter"] for r in want] == [1, 2, 3]
    for key in ("loss", "grad_norm", "rewards_accuracy", "rewards_margin", "logps_chosen", "val_loss"):
        a, b = ([r[key] for r in rows if key in r] for rows in (got, want))
        assert len(a) == len(b) > 0, key
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), rtol=1e-5, atol=1e-6, msg=key)


def test_gpt_full_fine_tuning_with_a_frozen_copy(tmp_path, gpt_dir, pairs_file, capsys) -> None:
    out = tmp_path / "gpt"
    args = [a for a in dpo_args(gpt_dir, pairs_file, "method=full", "optim.lr=1e-3", "train.max_iters=10",
                                "train.eval_interval=10", f"out_dir={out}") if a != "peft.r=4"]  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    rows = read_metrics(out / "metrics.jsonl")
    assert rows[0]["loss"] == pytest.approx(0.6931, abs=1e-3) and rows[-1]["loss"] < rows[0]["loss"]
    assert json.loads((out / "summary.json").read_text())["reference"] == "frozen copy"
    assert (out / "model").is_dir()


def test_the_shipped_config_validates() -> None:
    from llmlab.recipes.align_config import load_align_config

    root = Path(__file__).resolve().parents[2]
    cfg = load_align_config(root / "configs" / "align" / "dpo-lora.yaml", [], "dpo")
    cfg.validate()
    assert cfg.objective == "dpo" and cfg.method == "lora" and cfg.dpo.loss == "sigmoid"
