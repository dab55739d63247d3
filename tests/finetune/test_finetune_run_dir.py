"""`llmlab finetune` checks the whole config and its run folder before anything is loaded or written, never
writes into a folder llmlab did not create, and never deletes a run that can be resumed (issue 9)."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import run_cli
from finetune_helpers import FAST, toy_records, write_jsonl


@pytest.fixture
def no_model_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a model fails the test: the errors must come first."""

    def refuse(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was loaded before the config was checked")

    monkeypatch.setattr("llmlab.hub.load_for_inference", refuse)


BAD = [
    (["optim.lr=nan"], "optim.lr must be a finite number > 0, got nan"),
    (["optim.lr=-1"], "optim.lr must be a finite number > 0, got -1"),
    (["optim.name=adamx"], "unknown optimizer 'adamx' (optim.name)"),
    (["schedule.name=zigzag"], "unknown schedule.name 'zigzag'"),
    (["schedule.warmup_iters=-1"], "schedule.warmup_iters must be >= 0, got -1"),
    (["train.device=xyz"], "train.device: unknown device 'xyz'"),
    (["train.distributed=fsdp"], "FSDP is not supported for fine-tuning yet"),
    (["train.ckpt_interval=5"], "train.ckpt_interval was renamed train.save_interval"),
    (["peft.num_virtual_tokens=0", "--method", "prompt"], "peft: num_virtual_tokens=0 must be positive"),
    (["peft.r=abc"], "peft.r: expected int, got 'abc'"),
]
if not torch.cuda.is_available():
    BAD += [
        (["train.precision=fp16"], "train.precision=fp16 needs a CUDA GPU"),
        (["train.device=cuda"], "train.device: device 'cuda' is not available here"),
    ]


@pytest.mark.parametrize(("args", "message"), BAD, ids=lambda v: v[0] if isinstance(v, list) else None)
def test_bad_settings_fail_before_loading_or_writing(tmp_path, llama_dir, no_model_load, capsys, args, message):
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(8))
    code, _, err = run_cli(["finetune", f"base={llama_dir}", f"data.train={data}", f"out_dir={tmp_path / 'run'}",
                        *FAST, *args], capsys)  # fmt: skip
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_folder_is_never_written(tmp_path, llama_dir, no_model_load, capsys, overwrite) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(8))
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}")
    (out / "config.yaml").write_text("mine: true\n")  # a config.yaml does not make it a llmlab run
    args = ["finetune", f"base={llama_dir}", f"data.train={data}", f"out_dir={out}", *FAST]
    code, _, err = run_cli([*args, *(["overwrite=true"] if overwrite else [])], capsys)
    assert code == 2 and "is a non-empty folder that llmlab did not create" in err
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "thesis.tex"]
    assert (out / "config.yaml").read_text() == "mine: true\n"


def test_out_dir_may_not_hold_the_data(tmp_path, llama_dir, no_model_load, capsys) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(8))
    code, _, err = run_cli(
        ["finetune", f"base={llama_dir}", f"data.train={data}", f"out_dir={tmp_path}", *FAST], capsys
    )
    assert code == 2 and "would overwrite the input" in err


def test_an_interrupted_resume_keeps_its_run_folder(tmp_path, llama_dir, monkeypatch, capsys) -> None:
    """A resumed run killed while its checkpoint is being replaced (``checkpoints/last`` momentarily missing)
    keeps the whole run folder: only a new run that never checkpointed removes what it created."""
    import llmlab.train.trainer as trainer_module

    data = write_jsonl(tmp_path / "train.jsonl", toy_records(24))
    out = tmp_path / "run"
    args = ["finetune", f"base={llama_dir}", f"data.train={data}", f"out_dir={out}", "train.max_iters=2", *FAST]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err

    def killed_mid_save(path, *_a, **_k):  # noqa: ANN001, ANN002, ANN003, ANN202
        import shutil

        shutil.rmtree(path)  # the old checkpoint moved aside, the new one not yet in place ...
        raise KeyboardInterrupt  # ... when Ctrl-C arrives

    monkeypatch.setattr(trainer_module, "save_checkpoint", killed_mid_save)
    code, _, _ = run_cli([*args[:-5], "train.max_iters=3", *FAST, "--resume"], capsys)
    assert code == 130
    assert (out / "config.yaml").is_file() and (out / "metrics.jsonl").is_file() and (out / "adapter").is_dir()
