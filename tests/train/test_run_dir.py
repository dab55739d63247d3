"""`llmlab.train.run_dir`: the run-folder policy shared by pretrain, finetune and quickstart."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmlab.train.run_dir import RunDir, check_resume, open_run


def test_new_run_in_a_missing_folder_is_created_marked_and_removed_on_an_early_failure(tmp_path: Path) -> None:
    run = open_run(tmp_path / "a" / "run", "pretrain", resume=False, overwrite=False, max_iters=5)
    with pytest.raises(KeyboardInterrupt), run.guard():
        run.create()
        (run.path / "metrics.jsonl").write_text("{}\n")
        raise KeyboardInterrupt
    assert not run.path.exists() and (tmp_path / "a").is_dir()


def test_overwrite_replaces_only_an_earlier_llmlab_output(tmp_path: Path) -> None:
    first = open_run(tmp_path / "run", "finetune", resume=False, overwrite=False, max_iters=5)
    first.create()
    (first.path / "checkpoints" / "last").mkdir(parents=True)
    (first.path / "old.txt").write_text("from the earlier run")
    with pytest.raises(ValueError, match="already exists; pass --resume to continue it"):
        open_run(tmp_path / "run", "finetune", resume=False, overwrite=False, max_iters=5)
    again = open_run(tmp_path / "run", "finetune", resume=False, overwrite=True, max_iters=5)
    assert (first.path / "old.txt").exists()  # nothing happens before create()
    again.create()
    assert sorted(p.name for p in again.path.iterdir()) == [".llmlab-output"]
    again.create()  # a second call (quickstart's pretraining inside its folder) keeps what is there
    assert (again.path / ".llmlab-output").is_file()


def test_a_run_with_a_checkpoint_or_a_resumed_run_is_never_discarded(tmp_path: Path) -> None:
    run = open_run(tmp_path / "run", "pretrain", resume=False, overwrite=False, max_iters=5)
    run.create()
    (run.path / "checkpoints" / ".tmp-last-1").mkdir(parents=True)  # a save in progress
    run.discard()
    assert run.path.is_dir()
    resumed = RunDir(tmp_path / "other", "finetune", resume_state={"iter": 1})
    resumed.path.mkdir()
    resumed.create()
    resumed.discard()
    assert resumed.path.is_dir()


def test_resume_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="--resume: no checkpoint at"):
        open_run(tmp_path / "none", "pretrain", resume=True, overwrite=False, max_iters=5)
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="is not a llmlab run folder"):
        open_run(tmp_path / "foreign", "pretrain", resume=True, overwrite=False, max_iters=5)
    with pytest.raises(ValueError, match="cannot resume .*: model.n_layer is 2 in its checkpoint but 3 now"):
        check_resume({"model": {"n_layer": 2}}, {"model": {"n_layer": 3}}, tmp_path)
