"""`llmlab distill` end to end on tiny models: the run folder loads with `llmlab generate --checkpoint`, the top-k
cache and sequence-level KD paths, and one-line errors (exit 2) raised before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import run_cli
from distill_helpers import make_char_corpus, make_teacher

from llmlab.recipes.distill import distill, load_distill_config
from llmlab.train.logging import read_metrics


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, int]:
    corpus, vocab = make_char_corpus(tmp_path / "corpus")
    teacher = make_teacher(tmp_path / "teacher", corpus, vocab, hidden_size=48, num_attention_heads=6)
    return corpus, teacher, vocab


def _args(corpus: Path, teacher: Path, out: Path, *extra: str) -> list[str]:
    return [
        f"teacher={teacher}", f"data.dir={corpus}", "data.block_size=16", f"out_dir={out}", "student.preset=llama-tiny",
        "train.max_iters=3", "train.batch_size=4", "train.eval_iters=2", "train.device=cpu", "train.progress=false",
        "train.tensorboard=false", "train.log_interval=1", *extra,
    ]  # fmt: skip


def test_cli_end_to_end_and_generate_loads_the_run(setup, tmp_path: Path, capsys) -> None:
    corpus, teacher, _ = setup
    out = tmp_path / "run"
    args = _args(corpus, teacher, out, "kd.hidden_weight=0.5", "kd.attention_weight=0.5")
    code, stdout, err = run_cli(["distill", *args], capsys)
    assert code == 0, err
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "checkpoints/last/model.safetensors",
                 "checkpoints/last/tokenizer.json", "checkpoints/last/distill_projection.safetensors"):  # fmt: skip
        assert (out / name).is_file(), name
    row = read_metrics(out / "metrics.jsonl")[-1]
    assert {"loss_kd", "loss_ce", "loss_hidden", "loss_attention", "val_loss"} <= set(row)
    code, stdout, err = run_cli(
        ["generate", "--checkpoint", str(out), "--max-new-tokens", "5", "--prompt", "the"], capsys
    )
    assert code == 0, err
    assert stdout.strip()


def test_cached_topk_and_sequence_level_kd(setup, tmp_path: Path) -> None:
    corpus, teacher, vocab = setup
    cached = distill(load_distill_config(None, _args(corpus, teacher, tmp_path / "cached", "kd.cache_topk=8")))
    assert (tmp_path / "cached" / "teacher_cache" / "topk_cache.json").is_file()
    assert cached["iters"] == 3
    seq = distill(load_distill_config(None, _args(
        corpus, teacher, tmp_path / "seq", "kd.alpha=0", "sequence.samples=4", "sequence.new_tokens=24",
        "sequence.prompt_tokens=4", "sequence.batch_size=2",
    )))  # fmt: skip
    generated = tmp_path / "seq" / "teacher_data" / "train.bin"
    assert generated.is_file() and generated.stat().st_size >= 4 * (4 + 1) * 4
    assert seq["final_val_loss"] is not None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["student.model={vocab_size: 99}"], "student vocab_size 99 differs from the teacher's"),
        (["kd.temperature=0"], "kd.temperature must be a number > 0"),
        (["kd.alpha=2"], "kd.alpha must be in [0, 1]"),
        (["data.block_size=200"], "exceeds the teacher's context"),
        (["student.family=bert"], "bert"),
        (["student.model={hidden_sizee: 8}"], "unknown LlamaConfig field 'hidden_sizee'"),
        (["student.preset=null", "student.checkpoint=/nonexistent/model"], "/nonexistent/model"),
        (["student.checkpoint=/nonexistent/model"], "set either student.checkpoint or student.preset"),
        (["kd.cache_topk=-1"], "kd.cache_topk must be 0"),
        (["train.distributed=ddp"], "not supported by distill yet"),
    ],
)
def test_errors_are_one_line_and_nothing_is_written(setup, tmp_path: Path, capsys, extra, message) -> None:
    corpus, teacher, _ = setup
    out = tmp_path / "run"
    code, _stdout, err = run_cli(["distill", *_args(corpus, teacher, out, *extra)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("llmlab: error:") and message in lines[0], err
    assert not out.exists()


def test_the_student_starts_from_the_same_weights_with_and_without_kd(setup, tmp_path: Path) -> None:
    """Only train.seed decides the fresh student's init, whatever ran before (the benchmark runs rows in turn)."""
    import torch

    from llmlab.recipes.distill import _prepare

    corpus, teacher, _ = setup
    students = []
    for i, alpha in enumerate(("0.5", "0")):
        torch.manual_seed(100 + i)  # a different global RNG state before each
        cfg = load_distill_config(None, _args(corpus, teacher, tmp_path / f"run{i}", f"kd.alpha={alpha}"))
        students.append(_prepare(cfg, resume=False)[3])
    for (name, a), b in zip(students[0].state_dict().items(), students[1].state_dict().values(), strict=True):
        assert torch.equal(a, b), name
