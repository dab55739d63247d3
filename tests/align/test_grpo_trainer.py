"""``llmlab align grpo`` end to end on a tiny Llama: a verifiable reward rises, exact --resume, beta=0 runs without
a reference, and the exported policy loads in ``llmlab generate``."""

from __future__ import annotations

import json

import pytest
import torch
from align_helpers import FAST
from cli_helpers import run_cli

import llmlab.align.grpo_trainer as grpo_trainer
from llmlab.recipes.align import align, load_align_config


def vowel_share(prompts, completions, records):
    """A dense verifiable toy reward: the share of vowels among the completion's letters."""
    out = []
    for c in completions:
        letters = [ch for ch in c.lower() if ch.isalpha()]
        out.append(sum(ch in "aeiou" for ch in letters) / len(letters) if letters else 0.0)
    return out


def overrides(base, prompts_file, out_dir, *extra):
    return [
        *FAST, f"base={base}", f"data.train={prompts_file}", "data.template=plain", f"out_dir={out_dir}",
        "data.max_prompt_length=16", "data.max_length=32", "rollout.max_new_tokens=6", "grpo.prompts_per_step=4",
        "grpo.num_generations=4", "train.eval_interval=0", "train.max_eval_examples=4", "train.eval_batch_size=4",
        f"reward.functions=[{__name__}:vowel_share]", *extra,
    ]  # fmt: skip


def rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_reward_rises(llama_dir, prompts_file, tmp_path):
    out = tmp_path / "run"
    cfg = load_align_config(None, overrides(llama_dir, prompts_file, out, "method=full", "optim.lr=1e-2",
                            "train.max_iters=40", "grpo.beta=0.0", "schedule.warmup_iters=0"), "grpo")  # fmt: skip
    summary = align(cfg, say=lambda _m: None)
    rewards = [r["reward"] for r in rows(out)]
    assert len(rewards) == 40
    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    assert last > first + 0.2, (first, last)
    assert summary["final_reward"] == rewards[-1] and (out / "model").is_dir()
    assert {"kl", "clip_frac", "reward_std", "response_length", "reward_vowel_share"} <= set(rows(out)[0])


def test_exact_resume_and_off_policy_iterations(llama_dir, prompts_file, tmp_path):
    extra = ["train.max_iters=6", "grpo.num_iterations=2", "grpo.minibatch_size=8", "grpo.beta=0.1",
             "optim.lr=1e-2", "peft={r: 4, init_lora_weights: false}", "train.eval_interval=3",
             "schedule.warmup_iters=1", "schedule.decay_iters=6"]  # fmt: skip
    full = tmp_path / "full"
    align(load_align_config(None, overrides(llama_dir, prompts_file, full, *extra), "grpo"), say=lambda _m: None)
    part = tmp_path / "part"
    first = overrides(llama_dir, prompts_file, part, *extra, "train.max_iters=6", "train.save_interval=3")
    cfg = load_align_config(None, first, "grpo")
    cfg.train.max_iters = 3  # stop at step 3 of 6 (the checkpoint sits inside a rollout: 4 minibatches each)
    align(cfg, say=lambda _m: None)
    align(load_align_config(None, [*first, "resume=true"], "grpo"), say=lambda _m: None)
    a, b = rows(full), rows(part)
    for r in a + b:
        r.pop("elapsed"), r.pop("tokens_per_sec")
    assert a == b
    assert any(r["clip_frac"] > 0 for r in a) and all(r["kl"] >= 0 for r in a)
    assert "val_reward" in a[2] and "val_kl" in a[2]
    wa = torch.load(full / "checkpoints/last/trainer_state.pt", weights_only=False)["iter"]
    assert wa == 6
    from safetensors.torch import load_file

    ta, tb = (load_file(str(d / "checkpoints/last/trainable.safetensors")) for d in (full, part))
    assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


def test_beta_zero_needs_no_reference_and_policy_loads_in_generate(llama_dir, prompts_file, tmp_path, monkeypatch,
                                                                    capsys):  # fmt: skip
    built = []
    real = grpo_trainer.ReferencePolicy

    def spy(*a, **k):
        built.append(1)
        return real(*a, **k)

    monkeypatch.setattr("llmlab.align.reference.ReferencePolicy", spy)
    out = tmp_path / "run"
    args = ["align", "grpo", *overrides(llama_dir, prompts_file, out, "train.max_iters=2", "grpo.beta=0")]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert built == [] and "reference: none (beta=0)" in stdout
    assert all(r["kl"] == 0 for r in rows(out))
    code, stdout, err = run_cli(["generate", "--checkpoint", str(out), "-p", "3 plus 4 is", "-n", "4"], capsys)
    assert code == 0, err
    assert stdout.startswith("3 plus 4 is")


def test_errors(llama_dir, prompts_file, tmp_path, capsys):
    args = ["align", "grpo", *overrides(llama_dir, prompts_file, tmp_path / "r", "reward.functions=[nope]")]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "unknown reward function 'nope'" in err
    args = ["align", "grpo", *overrides(llama_dir, prompts_file, tmp_path / "r", "rollout.max_new_tokens=250")]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "exceeds the model's context" in err
    assert not (tmp_path / "r").exists()


def test_shipped_config_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    cfg = load_align_config(root / "configs/align/grpo-arithmetic.yaml", [], "grpo")
    cfg.validate()
    assert cfg.reward.functions == ["arithmetic_final"] and cfg.data.template == "plain"


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_torchrun_two_ranks(llama_dir, prompts_file, tmp_path):
    """GRPO under torchrun DDP: each rank rolls out its own prompts; one process writes; the policy loads."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "ddp"
    args = overrides(llama_dir, prompts_file, out, "method=lora", "train.max_iters=3", "grpo.beta=0.04")
    args = [a.replace(f"{__name__}:", "test_grpo_trainer:") for a in args]
    path = os.pathsep.join([str(Path(__file__).parent), str(root / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmlab"]
    proc = subprocess.run([*cmd, "align", "grpo", *args], env=env, capture_output=True, text=True, timeout=300,
                          cwd=root)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.stdout.count("saved:") == 1  # rank 0 only
    state = torch.load(out / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(rows(out)) == 3 and (out / "adapter").is_dir()
