"""`torchrun --nproc_per_node=2 -m llmlab finetune` (DDP, gloo on CPU) trains like one process with the global batch.

Each rank takes batch_size=2 rows of every global batch of 4, so the reference is one process with
batch_size=4; grad_accum=2 exercises DDP's no_sync, packing gives the ranks rows of different lengths and
learned-token counts (the loss is normalised by the global count). Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from finetune_helpers import FAST, finetune_args, toy_records, write_jsonl
from safetensors.torch import load_file

from llmlab.cli.main import main
from llmlab.train.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_ddp_two_ranks_match_single_process(tmp_path: Path, llama_dir: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", toy_records(60))
    common = finetune_args(
        "lora",
        llama_dir,
        data,
        "data.packing=true",
        "data.max_length=120",
        "peft.r=4",
        "peft.lora_dropout=0.0",
        "train.max_iters=3",
        "train.grad_accum=2",
        "train.eval_interval=0",
        "train.eval_batch_size=3",
        "train.save_interval=2",
        "optim.lr=1e-2",
        *FAST,
    )
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.raises(SystemExit) as exc:
            main([*common, "train.batch_size=4", f"out_dir={tmp_path / 'single'}"])
    finally:
        torch.set_num_threads(n)
    assert exc.value.code == 0

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmlab"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*common, "train.batch_size=2", f"out_dir={tmp_path / 'ddp'}"]
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("final_train_loss:") == 1  # rank 0 only

    rows, ref = (read_metrics(tmp_path / r / "metrics.jsonl") for r in ("ddp", "single"))
    assert [r["iter"] for r in rows] == [r["iter"] for r in ref] == [1, 2, 3]
    assert [r["learned_tokens"] for r in rows] == [r["learned_tokens"] for r in ref]
    for key in ("loss", "grad_norm", "val_loss"):
        got, want = ([r[key] for r in rs if key in r] for rs in (rows, ref))
        assert len(got) == len(want) > 0, key
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6, msg=key)
    adapter = "adapter/adapter_model.safetensors"
    w, w_ref = load_file(str(tmp_path / "ddp" / adapter)), load_file(str(tmp_path / "single" / adapter))
    assert w.keys() == w_ref.keys()
    for k in w:
        torch.testing.assert_close(w[k], w_ref[k], rtol=1e-4, atol=1e-6, msg=k)
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["iter"] == 3 and state["world_size"] == 2 and len(state["rng"]) == 2
