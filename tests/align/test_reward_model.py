"""Reward models (`llmlab.align.reward_model`, `rm_trainer`, `llmlab align rm`): HF parity of the scalar head,
the Bradley-Terry loss, a CLI run that learns, exact resume, loading and scoring, one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from align_helpers import FAST, tiny_llama, toy_pairs, write_jsonl
from cli_helpers import run_cli
from safetensors.torch import load_file

from llmlab.align.reward_model import RewardModel, bradley_terry_loss, load_reward_model


def test_scalar_head_matches_transformers_llama_for_sequence_classification(tmp_path):
    """The same weights give HF's LlamaForSequenceClassification(num_labels=1) scores on right- and left-padded
    batches (found through the attention mask), and a padded row scores as it does alone."""
    from transformers import LlamaForSequenceClassification

    from llmlab.models.llama.hf import save_hf_llama

    torch.manual_seed(0)
    base = tiny_llama(64).eval()
    rm = RewardModel(base, pad_id=0).eval()
    torch.nn.init.normal_(rm.score.weight, std=0.5)
    save_hf_llama(base, tmp_path / "hf")
    hf = LlamaForSequenceClassification.from_pretrained(tmp_path / "hf", num_labels=1, pad_token_id=0).eval()
    with torch.no_grad():
        hf.score.weight.copy_(rm.score.weight)
    right = torch.tensor([[5, 6, 7, 8, 9, 10], [5, 6, 7, 0, 0, 0], [11, 12, 0, 0, 0, 0]])
    left = torch.tensor([[5, 6, 7, 8, 9, 10], [0, 0, 0, 5, 6, 7], [0, 0, 0, 0, 11, 12]])
    with torch.no_grad():
        alone = torch.cat([rm(torch.tensor([[5, 6, 7]])), rm(torch.tensor([[11, 12]]))])
        for ids in (right, left):
            mask = (ids != 0).long()
            ours = rm(ids, mask)
            assert ours.shape == (3,) and ours.dtype == torch.float32
            expected = hf(input_ids=ids, attention_mask=mask).logits[:, 0]
            torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(ours[1:], alone, rtol=1e-4, atol=1e-5)
    assert ours.std() > 0.01  # the scores are not trivially equal


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([1.0, 1.5, -1.0])
    by_hand = -sum(torch.log(1 / (1 + torch.exp(-(c - r)))) for c, r in zip(chosen, rejected, strict=True)) / 3
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected), by_hand)
    margin = torch.tensor([0.5, 0.0, 2.0])
    expected = -F.logsigmoid(chosen - rejected - margin).mean()
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected, margin), expected)
    # differences minus margins: 0.5, -1, -2 -> mean of log(1 + e^-d) = (0.474077 + 1.313262 + 2.126928) / 3
    assert bradley_terry_loss(chosen, rejected, margin).item() == pytest.approx(1.304756, abs=1e-5)


def _rm_args(base, pairs, out, *extra):
    return ["align", "rm", f"base={base}", f"data.train={pairs}", f"out_dir={out}", "data.template=plain",
            "train.batch_size=8", "train.eval_batch_size=16", "optim.lr=3e-3", "schedule.warmup_iters=0",
            "data.val_fraction=0.25", *FAST, *extra]  # fmt: skip


def _val_accuracy(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]


@pytest.mark.parametrize("family", ["llama", "gpt"])
def test_cli_rm_learns_toy_pairs_and_saves_a_scorer(tmp_path, family, request, capsys):
    base = request.getfixturevalue(f"{family}_dir")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(96))
    out = tmp_path / "rm"
    args = _rm_args(base, pairs, out, "method=full", "train.max_iters=20", "train.eval_interval=1", "optim.lr=1e-3")
    code, stdout, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    acc = _val_accuracy(out)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"accuracy", "chosen_reward", "rejected_reward", "margin"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_accuracy"] == acc[-1]
    assert acc[-1] >= 0.9 and acc[-1] > acc[0], acc
    assert "reward_model" in stdout
    scorer = load_reward_model(out)  # the run folder ...
    scores = scorer.score(["The movie 3 was"] * 2, [" wonderful", " terrible"])
    assert scores.shape == (2,) and scores[0] > scores[1]
    again = load_reward_model(out / "reward_model").score(["The movie 3 was"], [" wonderful"])  # ... or its folder
    torch.testing.assert_close(again, scores[:1])
    # score() renders as training did: it equals the head on the training rows
    row = scorer.encode("The movie 3 was", " wonderful")
    torch.testing.assert_close(scorer.score_ids(torch.tensor([row]), torch.ones(1, len(row))), scores[:1])


def test_cli_rm_lora_learns_and_merges(tmp_path, llama_dir, capsys):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(96))
    out = tmp_path / "rm-lora"
    args = _rm_args(llama_dir, pairs, out, "method=lora", "peft.r=4", "train.max_iters=30", "train.eval_interval=10")
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    acc = _val_accuracy(out)
    assert acc[-1] >= 0.8 and acc[-1] > acc[0], acc
    trained = load_file(str(out / "checkpoints" / "last" / "trainable.safetensors"))
    assert "score.weight" in trained and any("lora" in k for k in trained)
    assert not (out / "reward_model" / "adapter_config.json").exists()  # merged: a self-contained backbone
    scores = load_reward_model(out).score(["The movie 1 was"] * 2, [" lovely", " awful"])
    assert scores[0] > scores[1]


def test_cli_rm_resume_is_exact(tmp_path, llama_dir, monkeypatch, capsys):
    """A run killed during step 6 (checkpoint at step 4) and resumed equals one that never stopped: weights and
    every metrics row (grad_accum 2, margin and centring on)."""
    from llmlab.data.preference import PairStream

    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(64))
    args = ["method=lora", "peft.r=4", "train.max_iters=8", "train.eval_interval=3", "train.save_interval=2",
            "train.grad_accum=2", "rm.use_margin=true", "rm.center_rewards_coefficient=0.01"]  # fmt: skip
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_cli(_rm_args(llama_dir, pairs, full, *args), capsys)[0] == 0
    real, calls = PairStream.next_batch, [0]

    def next_batch(self):  # noqa: ANN001, ANN202
        calls[0] += 1
        if calls[0] > 2 * 5:
            raise KeyboardInterrupt
        return real(self)

    with monkeypatch.context() as m:
        m.setattr(PairStream, "next_batch", next_batch)
        code, _, stderr = run_cli(_rm_args(llama_dir, pairs, part, *args), capsys)
    assert code == 130, stderr
    assert torch.load(part / "checkpoints" / "last" / "trainer_state.pt", weights_only=True)["iter"] == 4
    code, _, stderr = run_cli([*_rm_args(llama_dir, pairs, part, *args), "--resume"], capsys)
    assert code == 0, stderr
    a = load_file(str(full / "checkpoints" / "last" / "trainable.safetensors"))
    b = load_file(str(part / "checkpoints" / "last" / "trainable.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    def rows(folder):  # noqa: ANN001, ANN202
        drop = ("elapsed", "tokens_per_sec")
        return [{k: v for k, v in json.loads(x).items() if k not in drop}
                for x in (folder / "metrics.jsonl").read_text().splitlines()]  # fmt: skip

    assert rows(full) == rows(part) and [r["iter"] for r in rows(full)] == list(range(1, 9))
    assert json.loads((part / "summary.json").read_text())["resumed_from"] == 4
    fa = load_reward_model(full).score(["The movie 2 was"], [" good"])
    torch.testing.assert_close(load_reward_model(part).score(["The movie 2 was"], [" good"]), fa, rtol=0, atol=0)


def test_cli_rm_malformed_jsonl_is_one_line_with_the_line_number(tmp_path, llama_dir, capsys):
    path = tmp_path / "bad.jsonl"
    good = json.dumps(toy_pairs(1)[0])
    path.write_text(f"{good}\n{good}\n" + json.dumps({"prompt": "x", "chosen": "y"}) + "\n", encoding="utf-8")
    out = tmp_path / "rm-bad"
    code, _, stderr = run_cli(_rm_args(llama_dir, path, out, "train.max_iters=2"), capsys)
    assert code == 2
    assert f"{path} line 3: missing 'rejected' field" in stderr and len(stderr.strip().splitlines()) == 1
    assert not out.exists()  # nothing written


def test_rm_rejects_unmergeable_method(tmp_path, llama_dir, pairs_file, capsys):
    code, _, stderr = run_cli(_rm_args(llama_dir, pairs_file, tmp_path / "x", "method=prompt"), capsys)
    assert code == 2 and "cannot be folded" in stderr and not (tmp_path / "x").exists()


def test_load_reward_model_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reward model"):
        load_reward_model(tmp_path)


@pytest.mark.slow
@pytest.mark.xdist_group("torchrun")  # never two 2-rank jobs at once on 2 cores
@pytest.mark.parametrize("method", ["lora", "full"])
def test_ddp_two_ranks_match_single_process(tmp_path, llama_dir, method, capsys):
    """`torchrun --nproc_per_node=2 -m llmlab align rm` (gloo) trains like one process with the global batch:
    the same losses, accuracies, val figures and weights (grad_accum 2 exercises no_sync)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    pairs = write_jsonl(tmp_path / "pairs.jsonl", toy_pairs(64))
    common = [f"method={method}", *(["peft.r=4"] if method == "lora" else []), "train.max_iters=3",
              "train.grad_accum=2", "train.eval_interval=3", "train.eval_batch_size=5"]  # fmt: skip
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = _rm_args(llama_dir, pairs, tmp_path / "single", *common, "train.batch_size=4")
        assert run_cli(single, capsys)[0] == 0
    finally:
        torch.set_num_threads(n)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "llmlab"]
    ddp = [*_rm_args(llama_dir, pairs, tmp_path / "ddp", *common, "train.batch_size=2"), "train.distributed=ddp"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*cmd, *ddp], env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r: [json.loads(x) for x in (tmp_path / r / "metrics.jsonl").read_text().splitlines()]
            for r in ("single", "ddp")}  # fmt: skip
    for key in ("loss", "grad_norm", "accuracy", "margin", "val_loss", "val_accuracy"):
        got, want = ([row[key] for row in rows[r] if key in row] for r in ("ddp", "single"))
        assert len(got) == len(want) > 0, key
        torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-5, atol=1e-6, msg=key)
    w = load_file(str(tmp_path / "ddp" / "checkpoints" / "last" / "trainable.safetensors"))
    w_ref = load_file(str(tmp_path / "single" / "checkpoints" / "last" / "trainable.safetensors"))
    assert w.keys() == w_ref.keys()
    for k in w:
        torch.testing.assert_close(w[k], w_ref[k], rtol=1e-4, atol=1e-6, msg=k)
