"""`llmlab align ppo` end to end with a tiny Llama: the reward rises, a resumed run (stopped with a partly consumed
rollout buffer) is bit-identical to one that never stopped, the adaptive KL controller moves the coefficient the
right way, the reference is the adapters-off policy (LoRA) or a frozen copy (full), the exported policy loads in
`llmlab generate`, and torchrun DDP runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from align_helpers import FAST, toy_prompts, write_jsonl
from cli_helpers import run_cli
from safetensors.torch import load_file

from llmlab.align.ppo_trainer import PPOTrainer
from llmlab.train.logging import read_metrics

ROOT = Path(__file__).resolve().parents[2]
REWARD = f"reward.functions=[{Path(__file__).stem}:digit_reward]"
COMPARED = (
    "iter", "loss", "lr", "grad_norm", "reward", "kl", "kl_coef", "entropy", "clip_frac", "value_loss",
    "policy_loss", "response_length", "approx_kl", "value_clip_frac", "rollout", "val_reward", "val_kl",
)  # fmt: skip


def digit_reward(prompts: list[str], completions: list[str], records: list[dict]) -> list[float]:
    """A verifiable toy reward: the number of digits in the completion."""
    return [float(sum(ch.isdigit() for ch in c)) for c in completions]


def ppo_args(base: Path, prompts: Path, out: Path, *extra: str) -> list[str]:
    return [
        "align", "ppo", f"base={base}", f"data.train={prompts}", "data.template=plain", "data.val_fraction=0",
        REWARD, f"out_dir={out}", "train.eval_interval=0", "rollout.max_new_tokens=2", *FAST, *extra,
    ]  # fmt: skip


def curve(run_dir: Path) -> list[dict]:
    return [{k: r.get(k) for k in COMPARED} for r in read_metrics(run_dir / "metrics.jsonl")]


def test_reward_rises_and_the_policy_loads_in_generate(tmp_path, llama_dir, prompts_file, capsys):
    out = tmp_path / "run"
    args = ppo_args(
        llama_dir, prompts_file, out, "method=full", "optim.lr=3e-3", "ppo.prompts_per_rollout=64",
        "ppo.minibatch_size=32", "ppo.ppo_epochs=4", "train.max_iters=48", "train.log_interval=8",
    )  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    rows = read_metrics(out / "metrics.jsonl")
    by_rollout = {r["rollout"]: r["reward"] for r in rows}
    assert sorted(by_rollout) == [1, 2, 3, 4, 5, 6]  # 8 optimizer steps per rollout (4 epochs x 2 minibatches)
    first, last = by_rollout[1], (by_rollout[5] + by_rollout[6]) / 2
    assert last > 2 * first + 0.1, by_rollout
    for key in ("kl", "kl_coef", "entropy", "clip_frac", "value_loss", "policy_loss", "response_length", "approx_kl"):
        assert all(key in r for r in rows), key
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "copy" and summary["rollouts"] == 6
    # the checkpoint holds the value head; the exported model is the policy alone and loads in generate
    ckpt = load_file(str(out / "checkpoints" / "last" / "trainable.safetensors"))
    assert any(k.startswith("value_head.") for k in ckpt) and any(k.startswith("policy.") for k in ckpt)
    exported = load_file(str(out / "model" / "model.safetensors"))
    assert not any("value_head" in k for k in exported)
    code, text, err = run_cli(["generate", "--checkpoint", str(out), "-n", "4", "-p", "3 plus 4 is"], capsys)
    assert code == 0 and text.strip(), err


def test_resume_with_a_partly_consumed_rollout_is_exact(tmp_path, llama_dir, prompts_file, capsys, monkeypatch):
    common = [
        "method=lora", "peft.r=4", "optim.lr=1e-2", "ppo.prompts_per_rollout=8", "ppo.minibatch_size=4",
        "ppo.ppo_epochs=2", "train.max_iters=7", "train.grad_accum=2", "ppo.adaptive_kl=true",
        "ppo.target_kl=0.0001", "ppo.kl_horizon=20", "ppo.kl_coef=0.2", "data.val_fraction=0.1",
        "train.eval_interval=2",
    ]  # fmt: skip
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    code, _, err = run_cli(ppo_args(llama_dir, prompts_file, straight, *common), capsys)
    assert code == 0, err
    # 4 steps per rollout of 2 micro-batches each; a checkpoint at step 3 leaves 2 of rollout 1's 8 micro-batches
    real, calls = PPOTrainer.next_batch, [0]

    def next_batch(self: PPOTrainer) -> dict:
        calls[0] += 1
        if calls[0] > 2 * 5:  # killed during step 6 (the checkpoint is at step 3)
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as m:
        m.setattr(PPOTrainer, "next_batch", next_batch)
        code, _, err = run_cli(ppo_args(llama_dir, prompts_file, resumed, *common, "train.save_interval=3"), capsys)
    assert code == 130, err
    state = torch.load(resumed / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["iter"] == 3 and len(state["data"]["ranks"][0]["queue"]) == 2  # mid-rollout
    code, _, err = run_cli([*ppo_args(llama_dir, prompts_file, resumed, *common, "train.save_interval=3"),
                            "--resume"], capsys)  # fmt: skip
    assert code == 0, err
    got, want = curve(resumed), curve(straight)
    assert [r["iter"] for r in want] == list(range(1, 8))
    assert [r["iter"] for r in want if r["val_reward"] is not None] == [2, 4, 6, 7]  # evaluation draws no randomness
    assert got == want
    w, w_ref = (load_file(str(d / "checkpoints" / "last" / "trainable.safetensors")) for d in (resumed, straight))
    assert w.keys() == w_ref.keys() and all(torch.equal(w[k], w_ref[k]) for k in w)
    a, a_ref = (load_file(str(d / "adapter" / "adapter_model.safetensors")) for d in (resumed, straight))
    assert all(torch.equal(a[k], a_ref[k]) for k in a)
    # adaptive KL: after each rollout the coefficient moves towards the target by Ziegler et al.'s rule
    per_rollout = {r["rollout"]: (r["kl"], r["kl_coef"]) for r in want}
    assert per_rollout[1] == (0.0, 0.2)  # LoRA starts as the reference: KL 0
    final = json.loads((straight / "summary.json").read_text())["final_kl_coef"]
    for r, (kl, coef) in per_rollout.items():
        after = per_rollout[r + 1][1] if r + 1 in per_rollout else final
        assert after == pytest.approx(coef * (1 + max(-0.2, min(0.2, kl / 0.0001 - 1)) * 8 / 20))
        assert (after > coef) == (kl > 0.0001)
    assert json.loads((straight / "summary.json").read_text())["reference"] == "adapters"


def test_adaptive_kl_shrinks_below_target_and_fixed_stays(tmp_path, llama_dir, prompts_file, capsys):
    common = ["method=lora", "ppo.prompts_per_rollout=4", "ppo.minibatch_size=4", "ppo.ppo_epochs=1",
              "train.max_iters=3", "optim.lr=1e-2"]  # fmt: skip
    out = tmp_path / "adaptive"
    code, _, err = run_cli(ppo_args(llama_dir, prompts_file, out, *common, "ppo.adaptive_kl=true",
                                    "ppo.target_kl=1000", "ppo.kl_horizon=10"), capsys)  # fmt: skip
    assert code == 0, err
    coefs = [r["kl_coef"] for r in read_metrics(out / "metrics.jsonl")]
    assert coefs[0] == 0.05 and all(b < a for a, b in zip(coefs, coefs[1:], strict=False))
    assert coefs[1] == pytest.approx(0.05 * (1 - 0.2 * 4 / 10))
    fixed = tmp_path / "fixed"
    code, _, err = run_cli(ppo_args(llama_dir, prompts_file, fixed, *common), capsys)
    assert code == 0, err
    assert {r["kl_coef"] for r in read_metrics(fixed / "metrics.jsonl")} == {0.05}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_reference_is_adapters_off_or_a_frozen_copy(tmp_path, llama_dir, prompts_file, capsys, monkeypatch, method):
    from llmlab.hub import load_for_inference

    seen: list[PPOTrainer] = []
    real_fit = PPOTrainer.fit

    def fit(self: PPOTrainer) -> dict:
        seen.append(self)
        return real_fit(self)

    monkeypatch.setattr(PPOTrainer, "fit", fit)
    args = ppo_args(llama_dir, prompts_file, tmp_path / "run", f"method={method}", "ppo.prompts_per_rollout=4",
                    "ppo.minibatch_size=4", "ppo.ppo_epochs=1", "train.max_iters=2", "optim.lr=1e-2")  # fmt: skip
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    trainer = seen[0]
    ref = trainer.reference
    base = load_for_inference(str(llama_dir)).model.eval()
    b = trainer.buffer
    ids, attn, resp = b["input_ids"], b["attention_mask"], b["response_mask"]
    from llmlab.align.logprobs import token_logprobs

    with torch.no_grad():
        want = token_logprobs(base, ids, attn, resp).logprobs
        policy_now = token_logprobs(trainer.raw_model.policy.eval(), ids, attn, resp).logprobs
    torch.testing.assert_close(ref.token_logprobs(ids, attn, resp).logprobs, want)  # the untrained base
    assert not torch.allclose(policy_now, want)  # while the policy moved
    if method == "lora":
        assert ref.mode == "adapters" and ref.copy is None  # no second copy of the weights
    else:
        assert ref.mode == "copy" and ref.copy is not trainer.raw_model.policy
        assert not any(p.requires_grad for p in ref.copy.parameters())


def test_errors_before_anything_is_written(tmp_path, llama_dir, prompts_file, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(ppo_args(llama_dir, prompts_file, out, "ppo.prompts_per_rollout=6",
                                    "ppo.minibatch_size=4"), capsys)  # fmt: skip
    assert code == 2 and "multiple of ppo.minibatch_size" in err and not out.exists()
    code, _, err = run_cli(ppo_args(llama_dir, prompts_file, out, "ppo.minibatch_size=4", "train.grad_accum=3",
                                    "ppo.prompts_per_rollout=8"), capsys)  # fmt: skip
    assert code == 2 and "train.grad_accum" in err and not out.exists()
    code, _, err = run_cli(ppo_args(llama_dir, prompts_file, out, "rollout.max_new_tokens=250"), capsys)
    assert code == 2 and "context" in err and not out.exists()


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
def test_ddp_two_ranks_resume_mid_rollout_is_exact(tmp_path, llama_dir):
    """Two ranks: 4 steps straight == 2 steps (half of each rank's first rollout) + --resume to 4."""
    prompts = write_jsonl(tmp_path / "prompts.jsonl", toy_prompts(32))
    common = ["method=lora", "ppo.prompts_per_rollout=4", "ppo.minibatch_size=2", "ppo.ppo_epochs=2",
              "optim.lr=1e-2", "schedule.name=constant", "schedule.warmup_iters=0"]  # fmt: skip
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmlab"]
    path = os.pathsep.join([str(Path(__file__).parent), str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}

    def torchrun(out: Path, *extra: str) -> str:
        args = ppo_args(llama_dir, prompts, out, *common, *extra)
        proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc.stdout

    stdout = torchrun(tmp_path / "straight", "train.max_iters=4")
    assert stdout.count("saved:") == 1  # rank 0 only
    torchrun(tmp_path / "resumed", "train.max_iters=2")
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)
    assert state["world_size"] == 2 and [len(r["queue"]) for r in state["data"]["ranks"]] == [2, 2]
    torchrun(tmp_path / "resumed", "train.max_iters=4", "resume=true")
    got, want = curve(tmp_path / "resumed"), curve(tmp_path / "straight")
    assert [r["iter"] for r in want] == [1, 2, 3, 4] and got == want
    w, w_ref = (load_file(str(tmp_path / d / "adapter" / "adapter_model.safetensors")) for d in ("resumed", "straight"))
    assert w.keys() == w_ref.keys() and all(torch.equal(w[k], w_ref[k]) for k in w)


def test_the_sentiment_config_runs_with_a_tiny_model(tmp_path, llama_dir, prompts_file, capsys):
    from llmlab.recipes.align import load_align_config

    config = ROOT / "configs" / "align" / "ppo-sentiment.yaml"
    cfg = load_align_config(config, [], "ppo")
    cfg.validate()
    assert cfg.method == "lora" and cfg.reward.model and cfg.ppo.prompts_per_rollout % cfg.ppo.minibatch_size == 0
    out = tmp_path / "run"
    args = ["align", "ppo", "--config", str(config), f"base={llama_dir}", f"data.train={prompts_file}",
            "reward.model=null", REWARD, f"out_dir={out}", "peft.target_modules=[q_proj,v_proj]",
            "train.max_iters=2", "train.eval_interval=2", "ppo.prompts_per_rollout=4", "ppo.minibatch_size=2",
            "ppo.ppo_epochs=1", "rollout.max_new_tokens=3", *FAST]  # fmt: skip
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    assert "val_reward" in stdout and (out / "adapter" / "adapter_model.safetensors").is_file()


def test_a_reward_model_from_llmlab_align_rm_is_the_reward(tmp_path, llama_dir, capsys, monkeypatch):
    from align_helpers import toy_pairs

    from llmlab.align.reward_model import load_reward_model

    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(64))
    rm = tmp_path / "rm"
    code, _, err = run_cli(["align", "rm", f"base={llama_dir}", f"data.train={pairs}", f"out_dir={rm}",
                            "data.template=plain", "method=full", "train.max_iters=4", "train.eval_interval=0",
                            "data.val_fraction=0", *FAST], capsys)  # fmt: skip
    assert code == 0, err
    prompts = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p["prompt"]} for p in toy_pairs(16)])
    seen: list[PPOTrainer] = []
    real = PPOTrainer.collect_rollout

    def collect(self: PPOTrainer) -> None:
        real(self)
        seen.append(self)

    monkeypatch.setattr(PPOTrainer, "collect_rollout", collect)
    out = tmp_path / "ppo"
    args = [
        "align",
        "ppo",
        f"base={llama_dir}",
        f"data.train={prompts}",
        "data.template=plain",
        f"reward.model={rm}",
        f"out_dir={out}",
        "method=lora",
        "ppo.prompts_per_rollout=4",
        "ppo.minibatch_size=4",
        "ppo.ppo_epochs=1",
        "train.max_iters=2",
        "train.eval_interval=0",
        "data.val_fraction=0",
        "rollout.max_new_tokens=3",
        *FAST,
    ]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert json.loads((out / "summary.json").read_text())["rewards"] == ["model"]
    # the logged reward of the last rollout is the reward model's mean score of its completions
    trainer, rows = seen[-1], read_metrics(out / "metrics.jsonl")
    from llmlab.align.evaluate import completion_texts
    from llmlab.align.rollout import Rollout

    b = trainer.buffer
    n = b["input_ids"].shape[0]
    rollout = Rollout(
        b["input_ids"],
        b["attention_mask"],
        b["response_mask"],
        torch.arange(n),
        torch.zeros(n, dtype=torch.long),
        b["response_mask"].sum(-1),
        torch.ones(n, dtype=torch.bool),
    )
    texts = completion_texts(rollout, trainer.tokenizer, trainer.eos_ids)
    prompt_texts = [trainer.tokenizer.decode(row[: int(m.argmax())].tolist())
                    for row, m in zip(b["input_ids"], b["response_mask"], strict=True)]  # fmt: skip
    scores = load_reward_model(rm).score(prompt_texts, texts)
    assert rows[-1]["reward"] == pytest.approx(float(scores.mean()), abs=1e-4)
