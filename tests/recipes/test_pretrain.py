"""`llmlab pretrain` end to end on a tiny prepared corpus: run folder contents, exact resume, config errors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llmlab.cli.main import main
from llmlab.models.gpt import GPT
from llmlab.recipes.pretrain import load_pretrain_config
from llmlab.train.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
VOCAB = 20


def make_corpus(path: Path, n_train: int = 4000, n_val: int = 600, seed: int = 0) -> Path:
    """A prepared-corpus folder as `llmlab data prepare` writes it (train.bin/val.bin uint16 + meta.json)."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([1, 1, 1, 2], size=n_train + n_val)  # mostly "next token = token + 1": learnable
    tokens = (np.cumsum(steps) % VOCAB).astype(np.uint16)
    path.mkdir(parents=True)
    tokens[:n_train].tofile(path / "train.bin")
    tokens[n_train:].tofile(path / "val.bin")
    meta = {
        "dtype": "uint16",
        "vocab_size": VOCAB,
        "tokenizer": "tokenizer.json",
        "train_tokens": n_train,
        "val_tokens": n_val,
    }
    (path / "meta.json").write_text(json.dumps(meta))
    (path / "tokenizer.json").write_text('{"model": "stand-in"}')
    return path


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as exc:
        main(["pretrain", *args])
    return exc.value.code or 0


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return make_corpus(tmp_path / "corpus")


def test_cli_end_to_end_writes_the_run_folder(tmp_path: Path, corpus: Path, capsys) -> None:
    out = tmp_path / "run"
    code = run_cli(
        "--config",
        str(TINY),
        f"data.dir={corpus}",
        f"out_dir={out}",
        "train.tensorboard=true",
        "train.save_best=true",
        "optim.lr=1e-2",
    )
    assert code == 0
    cfg = (out / "config.yaml").read_text()
    assert f"vocab_size: {VOCAB}" in cfg and "lr: 0.01" in cfg  # resolved: vocab from meta.json, override
    rows = read_metrics(out / "metrics.jsonl")
    assert [r["iter"] for r in rows] == list(range(1, 21))  # log_interval=1 in tiny.yaml
    for key in ("loss", "lr", "grad_norm", "tokens_per_sec", "elapsed"):
        assert all(isinstance(r[key], float) for r in rows), key
    assert [r["iter"] for r in rows if "val_loss" in r] == [10, 20]
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3  # it learns
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iters"] == 20 and summary["tokens_seen"] == 20 * 4 * 16
    assert summary["final_val_loss"] == rows[-1]["val_loss"]
    assert summary["best_val_loss"] == min(r["val_loss"] for r in rows if "val_loss" in r)
    last = out / "checkpoints" / "last"
    assert sorted(p.name for p in last.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "model_config.json",
        "tokenizer.json",
        "trainer_state.pt",
    ]
    assert (out / "checkpoints" / "best" / "model.safetensors").is_file()
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp dirs left
    assert any((out / "tb").iterdir())
    state = torch.load(last / "trainer_state.pt", weights_only=True)
    assert state["iter"] == 20 and set(state["rng"][0]) >= {"python", "numpy", "torch"}
    mcfg = GPT.from_pretrained(last).config
    assert mcfg.vocab_size == VOCAB and mcfg.n_layer == 2 and mcfg.n_embd == 32  # nano-char preset
    assert "pretraining summary" in capsys.readouterr().out


def _losses(out: Path) -> list[tuple[int, float, float | None]]:
    return [(r["iter"], r["loss"], r.get("val_loss")) for r in read_metrics(out / "metrics.jsonl")]


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path: Path, corpus: Path) -> None:
    common = [
        "--config",
        str(TINY),
        f"data.dir={corpus}",
        "model.dropout=0.1",
        "schedule.decay_iters=10",
        "train.eval_interval=3",
        "train.save_interval=0",
        "train.grad_accum=2",
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli(*common, f"out_dir={full}", "train.max_iters=10") == 0
    assert run_cli(*common, f"out_dir={part}", "train.max_iters=5") == 0
    assert run_cli(*common, f"out_dir={part}", "train.max_iters=10", "--resume") == 0
    a, b = _losses(full), _losses(part)
    assert [r[0] for r in b] == list(range(1, 11))
    assert [r[:2] for r in b] == [r[:2] for r in a]  # bit-identical train losses, dropout included
    val_a = {r[0]: r[2] for r in a if r[2] is not None}
    val_b = {r[0]: r[2] for r in b if r[2] is not None}
    assert set(val_a) == {3, 6, 9, 10} and set(val_b) == {3, 5, 6, 9, 10}  # the 5-iter session ended at 5
    assert all(val_b[i] == val_a[i] for i in val_a)
    wa = load_file(str(full / "checkpoints" / "last" / "model.safetensors"))
    wb = load_file(str(part / "checkpoints" / "last" / "model.safetensors"))
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_resume_without_checkpoint_and_fresh_run_over_one(tmp_path: Path, corpus: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--config", str(TINY), f"data.dir={corpus}", f"out_dir={out}", "train.max_iters=2"]
    assert run_cli(*args, "--resume") == 2
    assert "no checkpoint at" in capsys.readouterr().err
    assert not out.exists()
    assert run_cli(*args) == 0
    assert run_cli(*args) == 2
    assert "already exists; pass --resume to continue it" in capsys.readouterr().err
    assert run_cli(*args, "--resume") == 2
    assert "already finished: its checkpoint is at step 2 of train.max_iters=2" in capsys.readouterr().err
    assert run_cli(*args, "train.max_iters=3", "model.n_layer=3", "--resume") == 2
    assert "model.n_layer is 2 in its checkpoint but 3 now" in capsys.readouterr().err
    assert run_cli(*args, "overwrite=true", "train.max_iters=3") == 0
    assert [r["iter"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bogus.key=1"], "llmlab: error: unknown config key 'bogus'"),
        (["train.lr=3e-4"], "llmlab: error: unknown config key 'train.lr'"),
        (["data.dir=/nonexistent/corpus"], "does not exist (data.dir); run `llmlab data prepare` first"),
        (["model.block_size=600"], "model.block_size=600 is not smaller than the val split (600 tokens"),
        (["optim.name=adamx"], "unknown optimizer 'adamx'"),
        (["preset=nope"], "unknown model preset 'nope'"),
        (["optim.lr=nan"], "optim.lr must be a finite number > 0, got nan"),
        (["optim.lr=-1e-3"], "optim.lr must be a finite number > 0, got -0.001"),
        (["optim.kwargs={momentum: 0.9}"], "optimizer AdamW has no argument 'momentum' (optim.kwargs)"),
        (["schedule.name=zigzag"], "unknown schedule.name 'zigzag'; choose one of: cosine, linear, constant"),
        (["schedule.warmup_iters=-5"], "schedule.warmup_iters must be >= 0, got -5"),
        (["train.precision=fp64"], "unknown train.precision 'fp64'"),
        (["train.device=xyz"], "train.device: unknown device 'xyz'; available here: cpu"),
        (["train.distributed=zero3"], "unknown train.distributed 'zero3'"),
        (["train.save_interval=-1"], "train.save_interval must be >= 0, got -1"),
        (["train.ckpt_interval=5"], "train.ckpt_interval was renamed train.save_interval"),
    ],
)
def test_user_errors_are_one_line_exit_2(tmp_path: Path, corpus: Path, capsys, args: list[str], message: str) -> None:
    code = run_cli("--config", str(TINY), f"data.dir={corpus}", f"out_dir={tmp_path / 'run'}", *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()  # the whole config is checked before anything is written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train.precision=fp16"], "train.precision=fp16 needs a CUDA GPU"),
        (["train.device=cuda"], "train.device: device 'cuda' is not available here; available: cpu"),
    ],
)
def test_device_errors_before_anything_is_written(tmp_path: Path, corpus: Path, capsys, args, message) -> None:
    code = run_cli("--config", str(TINY), f"data.dir={corpus}", f"out_dir={tmp_path / 'run'}", *args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_renamed_key_in_a_yaml_is_named(tmp_path: Path, capsys) -> None:
    yml = tmp_path / "old.yaml"
    yml.write_text("train:\n  ckpt_interval: 5\n")
    assert run_cli("--config", str(yml)) == 2
    assert f"config file {yml}: train.ckpt_interval was renamed train.save_interval" in capsys.readouterr().err


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_foreign_folder_is_never_written(tmp_path: Path, corpus: Path, capsys, overwrite: bool) -> None:
    out = tmp_path / "thesis"
    out.mkdir()
    (out / "thesis.tex").write_text("\\documentclass{article}")
    (out / "config.yaml").write_text("mine: true\n")
    args = ["--config", str(TINY), f"data.dir={corpus}", f"out_dir={out}", "train.max_iters=2"]
    assert run_cli(*args, *(["overwrite=true"] if overwrite else [])) == 2
    assert "is a non-empty folder that llmlab did not create" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "thesis.tex"]
    assert (out / "config.yaml").read_text() == "mine: true\n"
    assert (out / "thesis.tex").read_text() == "\\documentclass{article}"


def test_resume_needs_a_llmlab_run_folder(tmp_path: Path, corpus: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["--config", str(TINY), f"data.dir={corpus}", f"out_dir={out}", "train.max_iters=2"]
    assert run_cli(*args) == 0
    assert (out / ".llmlab-output").is_file()
    (out / ".llmlab-output").unlink()
    assert run_cli(*args, "train.max_iters=3", "--resume") == 2
    assert "is not a llmlab run folder" in capsys.readouterr().err


def test_a_run_interrupted_before_its_first_checkpoint_removes_only_itself(tmp_path: Path, corpus: Path,
                                                                           monkeypatch) -> None:  # fmt: skip
    from llmlab.data.loader import RandomWindowLoader

    def interrupted(self):  # noqa: ANN001, ANN202
        raise KeyboardInterrupt

    monkeypatch.setattr(RandomWindowLoader, "next_batch", interrupted)
    empty = tmp_path / "empty"
    empty.mkdir()
    for out in (tmp_path / "new", empty):
        assert run_cli("--config", str(TINY), f"data.dir={corpus}", f"out_dir={out}") == 130
    assert not (tmp_path / "new").exists()
    assert empty.is_dir() and not any(empty.iterdir())  # the folder was the user's: it stays


def test_data_dir_without_meta(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    assert run_cli("--config", str(TINY), f"data.dir={tmp_path / 'empty'}", f"out_dir={tmp_path / 'r'}") == 2
    assert "has no meta.json; run `llmlab data prepare` first" in capsys.readouterr().err


def test_preset_is_overridden_by_explicit_model_keys(tmp_path: Path) -> None:
    yml = tmp_path / "c.yaml"
    yml.write_text("preset: nano-char\nmodel:\n  n_layer: 3\n  block_size: 64\n")
    cfg = load_pretrain_config(yml, ["model.n_embd=48", "model.n_head=4"])
    assert (cfg.model.n_layer, cfg.model.block_size, cfg.model.n_embd, cfg.model.n_head) == (3, 64, 48, 4)
    assert cfg.model.dropout == 0.0 and cfg.model.vocab_size == 65  # from the preset
    cfg = load_pretrain_config(None, ["preset=tiny-llama", "model.n_layer=1"])
    assert cfg.model.norm == "rmsnorm" and cfg.model.position == "rope" and cfg.model.n_layer == 1


def test_shakespeare_config_is_nanogpts_cpu_recipe() -> None:
    cfg = load_pretrain_config(ROOT / "configs" / "pretrain" / "shakespeare-char.yaml", [])
    m, t, o, s = cfg.model, cfg.train, cfg.optim, cfg.schedule
    assert (m.n_layer, m.n_head, m.n_embd, m.block_size, m.dropout) == (4, 4, 128, 64, 0.0)
    assert (t.batch_size, t.max_iters, t.eval_interval, t.eval_iters) == (12, 2000, 250, 200)
    assert (o.name, o.lr, o.betas, o.weight_decay, o.grad_clip) == ("adamw", 1e-3, [0.9, 0.99], 0.1, 1.0)
    assert (s.name, s.warmup_iters, s.min_lr, s.decay_iters) == ("cosine", 100, 1e-4, 2000)
    assert cfg.data.dir == "data/tinyshakespeare-char"


def test_pretraining_uses_the_warmup_as_configured(tmp_path: Path, corpus: Path, capsys) -> None:
    """Pretraining never shortens the warmup to a short run (fine-tuning does): a decay that ends before the
    warmup is an up-front error, an explicit longer decay keeps the configured warmup."""
    args = ["--config", str(TINY), f"data.dir={corpus}", "train.max_iters=3", "schedule.warmup_iters=5"]
    assert run_cli(*args, f"out_dir={tmp_path / 'a'}") == 2
    assert "schedule.decay_iters (3, from train.max_iters) is smaller than schedule.warmup_iters (5)" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "a").exists()
    assert run_cli(*args, "schedule.decay_iters=10", f"out_dir={tmp_path / 'b'}") == 0
    lrs = [r["lr"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl")]
    assert lrs == pytest.approx([3e-3 * k / 6 for k in (1, 2, 3)])  # lr * (it + 1) / (warmup + 1)


def test_objective_clm_in_a_yaml_is_decoder_pretraining(tmp_path: Path) -> None:
    """`objective: clm` (the decoder objective, named in a YAML or an override) loads as decoder pretraining;
    another objective handed to the decoder config is refused in one line."""
    path = tmp_path / "clm.yaml"
    path.write_text("objective: clm\ntrain:\n  max_iters: 200\n", encoding="utf-8")
    assert load_pretrain_config(path, []).objective == "clm"
    assert load_pretrain_config(None, ["objective=clm"]).train.max_iters > 0
    with pytest.raises(ValueError, match="objective='mlm' is not decoder pretraining"):
        load_pretrain_config(path, ["objective=mlm"])
