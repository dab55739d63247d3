"""torchrun with 2 CPU processes (gloo): DDP and FSDP2 train exactly like one process with the global batch.

Each rank gets batch_size=2 of every global batch of 4, so the reference is a single process with
batch_size=4. grad_accum=2 exercises DDP's no_sync / FSDP2's deferred reduce-scatter. The FSDP2 run is
interrupted at iteration 3 and resumed, which also checks the gathered full optimizer state round trip.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from llmlab.cli.main import main
from llmlab.train.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "configs" / "pretrain" / "tiny.yaml"
VOCAB = 20


def make_corpus(path: Path, n_train: int = 4000, n_val: int = 600, seed: int = 0) -> Path:
    """A prepared-corpus folder as `llmlab data prepare` writes it (train.bin/val.bin uint16 + meta.json)."""
    rng = np.random.default_rng(seed)
    tokens = (np.cumsum(rng.choice([1, 1, 1, 2], size=n_train + n_val)) % VOCAB).astype(np.uint16)
    path.mkdir(parents=True)
    tokens[:n_train].tofile(path / "train.bin")
    tokens[n_train:].tofile(path / "val.bin")
    meta = {"dtype": "uint16", "vocab_size": VOCAB, "train_tokens": n_train, "val_tokens": n_val}
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def common(corpus: Path) -> list[str]:
    return [
        "--config",
        str(TINY),
        f"data.dir={corpus}",
        "train.grad_accum=2",
        "schedule.decay_iters=5",
        "train.eval_interval=5",
        "train.save_interval=0",
        "model.dropout=0.0",
    ]


def torchrun(*args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "llmlab",
        "pretrain",
        *args,
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, Path]:
    """The corpus and a single-process run with the global batch (4) for 5 iterations."""
    tmp = tmp_path_factory.mktemp("dist")
    corpus = make_corpus(tmp / "corpus")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exc:
            main(["pretrain", *common(corpus), f"out_dir={tmp / 'single'}", "train.batch_size=4", "train.max_iters=5"])
    finally:
        torch.set_num_threads(n)
    assert exc.value.code == 0
    return corpus, tmp / "single"


def assert_same_run(run: Path, ref: Path) -> None:
    rows, ref_rows = read_metrics(run / "metrics.jsonl"), read_metrics(ref / "metrics.jsonl")
    assert [r["iter"] for r in rows] == [r["iter"] for r in ref_rows] == [1, 2, 3, 4, 5]
    for key in ("loss", "grad_norm"):
        torch.testing.assert_close(
            torch.tensor([r[key] for r in rows]), torch.tensor([r[key] for r in ref_rows]), rtol=1e-5, atol=1e-6
        )
    torch.testing.assert_close(rows[-1]["val_loss"], ref_rows[-1]["val_loss"], rtol=1e-5, atol=1e-6)
    w, w_ref = (load_file(str(p / "checkpoints" / "last" / "model.safetensors")) for p in (run, ref))
    assert w.keys() == w_ref.keys()
    for k in w:
        torch.testing.assert_close(w[k], w_ref[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_ddp_two_ranks_match_single_process(reference: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, ref = reference
    torchrun(
        *common(corpus),
        f"out_dir={tmp_path / 'ddp'}",
        "train.batch_size=2",
        "train.max_iters=5",
        "train.distributed=ddp",
    )
    assert_same_run(tmp_path / "ddp", ref)


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_fsdp2_two_ranks_match_single_process_across_a_resume(reference: tuple[Path, Path], tmp_path: Path) -> None:
    corpus, ref = reference
    args = [*common(corpus), f"out_dir={tmp_path / 'fsdp'}", "train.batch_size=2", "train.distributed=fsdp"]
    torchrun(*args, "train.max_iters=3")
    state = torch.load(tmp_path / "fsdp" / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["iter"] == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
    torchrun(*args, "train.max_iters=5", "--resume")
    assert_same_run(tmp_path / "fsdp", ref)


def test_launch_mode_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmlab.train.distributed import init_distributed

    with pytest.raises(ValueError, match="unknown train.distributed 'zero3'; choose one of: auto, none, ddp, fsdp"):
        init_distributed("zero3", "cpu")
    assert init_distributed("fsdp", "cpu").mode == "none"  # a single process never wraps
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="launched with 2 processes but train.distributed=none"):
        init_distributed("none", "cpu")
