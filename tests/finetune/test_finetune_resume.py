"""`llmlab finetune` checkpoints and `--resume`: a run killed mid-way and resumed is bit-identical to one that
never stopped (per-step losses, val losses and final weights compared with ==), for LoRA and full fine-tuning
with dropout on, grad_accum 2, and (full) multi-task mixing with packing; plus the resume errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from finetune_helpers import FAST, count_records, finetune_args, tiny_gpt, toy_records, write_jsonl
from safetensors.torch import load_file

from llmlab.data.sft import SFTBatchStream
from llmlab.train.logging import read_metrics

COMPARED = ("iter", "loss", "lr", "grad_norm", "learned_tokens", "val_loss", "loss_colors", "loss_count")


def killed_after(monkeypatch: pytest.MonkeyPatch, n_batches: int) -> None:
    """Make the data stream raise KeyboardInterrupt (as if the job were killed) on batch `n_batches + 1`."""
    real, calls = SFTBatchStream.next_batch, [0]

    def next_batch(self: SFTBatchStream) -> dict[str, torch.Tensor]:
        calls[0] += 1
        if calls[0] > n_batches:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(SFTBatchStream, "next_batch", next_batch)


def curve(run_dir: Path) -> list[dict]:
    return [{k: r[k] for k in COMPARED if k in r} for r in read_metrics(run_dir / "metrics.jsonl")]


def assert_identical(run_dir: Path, ref_dir: Path, weights: str) -> None:
    got, want = curve(run_dir), curve(ref_dir)
    assert [r["iter"] for r in got] == [r["iter"] for r in want] == list(range(1, len(want) + 1))
    assert got == want  # exact: every loss, lr, grad norm and val loss
    w, w_ref = load_file(str(run_dir / weights)), load_file(str(ref_dir / weights))
    assert w.keys() == w_ref.keys()
    assert all(torch.equal(w[k], w_ref[k]) for k in w)


def interrupted_then_resumed(args: list[str], out: Path, killed_at: int, monkeypatch, capsys) -> str:
    """Run `args` into `out`, killed during step `killed_at` (grad_accum 2), then `--resume` it."""
    with monkeypatch.context() as m:
        killed_after(m, 2 * (killed_at - 1))
        code, _, err = run_cli([*args, f"out_dir={out}"], capsys)
    assert code == 130, err
    state = torch.load(out / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["iter"] == 2 * ((killed_at - 1) // 2)  # the last multiple of save_interval=2
    assert not (out / "summary.json").exists()
    code, stdout, err = run_cli([*args, f"out_dir={out}", "--resume"], capsys)
    assert code == 0, err
    return stdout


def test_lora_resume_is_bit_identical(tmp_path, llama_dir, gpt_dir, monkeypatch, capsys) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(60))
    args = finetune_args(
        "lora",
        llama_dir,
        data,
        "peft.r=4",
        "peft.lora_dropout=0.2",
        "train.max_iters=6",
        "train.batch_size=4",
        "train.grad_accum=2",
        "train.save_interval=2",
        "train.eval_interval=3",
        "optim.lr=1e-2",
        "schedule.warmup_iters=2",
        *FAST,
    )
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'ref'}"], capsys)
    assert code == 0, err
    stdout = interrupted_then_resumed(args, tmp_path / "run", 5, monkeypatch, capsys)
    assert "resuming at step 4 of 6" in stdout
    assert_identical(tmp_path / "run", tmp_path / "ref", "adapter/adapter_model.safetensors")
    ckpt = tmp_path / "run" / "checkpoints" / "last"
    assert sorted(p.name for p in ckpt.iterdir()) == ["checkpoint.json", "trainable.safetensors", "trainer_state.pt"]
    assert all("lora_" in k for k in load_file(str(ckpt / "trainable.safetensors")))  # the adapter only
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from"] == 4 and summary["iters"] == 6

    # Resuming a finished run says so; a resume with other settings or data names the difference.
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume"], capsys)
    assert code == 2 and "already finished: its checkpoint is at step 6 of train.max_iters=6" in err
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume", "--method", "qlora"], capsys)
    assert code == 2 and err.strip() == (
        f"llmlab: error: cannot resume {tmp_path / 'run'}: method is 'lora' in its checkpoint but 'qlora' now; "
        "resume with the run's settings (see its config.yaml) or start a new run (another out_dir, or overwrite=true)"
    )
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume", "peft.r=8"], capsys)
    assert code == 2 and "peft.r is 4 in its checkpoint but 8 now" in err
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume", f"base={gpt_dir}"], capsys)
    assert code == 2 and f"base is '{llama_dir}' in its checkpoint but '{gpt_dir}' now" in err
    write_jsonl(data, toy_records(60, seed=1))
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume", "train.max_iters=8"], capsys)
    assert code == 2 and "the training data changed" in err
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'run'}"], capsys)
    assert code == 2 and "already exists; pass --resume to continue it, choose another out_dir" in err
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'nothing'}", "--resume"], capsys)
    assert code == 2 and "--resume: no checkpoint at" in err
    precious = tmp_path / "precious"  # overwrite=true only ever deletes a llmlab run folder
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code, _, err = run_cli([*args, f"out_dir={precious}", "overwrite=true"], capsys)
    assert code == 2 and "is a non-empty folder that llmlab did not create" in err
    assert (precious / "notes.txt").read_text() == "keep me"


def test_full_multitask_packed_resume_is_bit_identical(tmp_path, tokenizer, monkeypatch, capsys) -> None:
    base = tmp_path / "gpt"
    tiny_gpt(tokenizer.vocab_size, dropout=0.1).save_pretrained(base)
    tokenizer.save(base)
    a = write_jsonl(tmp_path / "a.jsonl", toy_records(40, seed=1))
    b = write_jsonl(tmp_path / "b.jsonl", count_records(40))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"base: {base}\nmethod: full\ndata:\n  packing: true\n  max_length: 160\n  tasks:\n"
        f"    - {{name: colors, path: {a}, weight: 3}}\n    - {{name: count, path: {b}, weight: 1, template: plain}}\n"
        "train:\n  max_iters: 5\n  batch_size: 2\n  grad_accum: 2\n  save_interval: 2\n  eval_interval: 2\n"
        "optim:\n  lr: 3.0e-3\n",
        encoding="utf-8",
    )
    args = ["finetune", "--config", str(cfg), *FAST]
    code, _, err = run_cli([*args, f"out_dir={tmp_path / 'ref'}"], capsys)
    assert code == 0, err
    interrupted_then_resumed(args, tmp_path / "run", 4, monkeypatch, capsys)
    assert_identical(tmp_path / "run", tmp_path / "ref", "model/model.safetensors")
    rows = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert all("loss_colors" in r and "loss_count" in r for r in rows)

    # Raising max_iters continues a finished run (the lr schedule changes, and it says so).
    code, out, err = run_cli([*args, f"out_dir={tmp_path / 'run'}", "--resume", "train.max_iters=6"], capsys)
    assert code == 0, err
    assert "resuming at step 5 of 6" in out and "note: lr schedule changed" in out
    assert [r["iter"] for r in read_metrics(tmp_path / "run" / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]


def test_a_run_killed_before_its_first_checkpoint_leaves_nothing(tmp_path, llama_dir, monkeypatch, capsys) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(20))
    killed_after(monkeypatch, 1)
    code, _, _ = run_cli(
        ["finetune", f"base={llama_dir}", f"data.train={data}", f"out_dir={tmp_path / 'run'}", "train.max_iters=3"]
        + FAST,
        capsys,
    )
    assert code == 130
    assert not (tmp_path / "run").exists()


def test_stream_ranks_split_the_global_batch_and_state_round_trips() -> None:
    from llmlab.data.sft import SFTExample

    tasks = [[SFTExample([t, i] * (1 + i % 3), [t, i] * (1 + i % 3), task=t) for i in range(7)] for t in range(2)]
    for packing in (False, True):
        kw = dict(batch_size=2, max_length=9, pad_id=0, packing=packing, seed=3)
        whole = SFTBatchStream(tasks, [2.0, 1.0], **{**kw, "batch_size": 4})
        ranks = [SFTBatchStream(tasks, [2.0, 1.0], **kw, rank=r, world_size=2) for r in range(2)]
        for _ in range(5):  # rank 0 + rank 1 rows == the single-process batch of 4 rows
            want = whole.next_batch()["input_ids"]
            got = [s.next_batch()["input_ids"] for s in ranks]
            t = max(g.shape[1] for g in got)
            got = torch.cat([torch.nn.functional.pad(g, (0, t - g.shape[1])) for g in got])
            assert torch.equal(got[:, : want.shape[1]], want) and not got[:, want.shape[1] :].any()
        state = whole.state_dict()
        copy = SFTBatchStream(tasks, [2.0, 1.0], **{**kw, "batch_size": 4})
        copy.load_state_dict(state)
        for _ in range(5):
            assert torch.equal(copy.next_batch()["input_ids"], whole.next_batch()["input_ids"])
    with pytest.raises(ValueError, match="resume with the same data"):
        SFTBatchStream(tasks[:1], [1.0], **kw).load_state_dict(state)
