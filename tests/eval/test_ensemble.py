"""EnsembleLM (probability averaging, majority voting) on tiny models, the runner's vote hook, and
`average_state_dicts` (model soups)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from tiny_models import spread, tiny_llama

from llmlab.eval.ensemble import EnsembleLM, average_state_dicts, majority
from llmlab.eval.harness.lm import EvalLM, ModelLM
from llmlab.eval.harness.runner import evaluate
from llmlab.eval.harness.task import load_task

CORPUS = ["Review: the film was great. Sentiment: positive\nQuestion: 12 + 7 = 19\nThe quick brown fox.\n" * 30]
SPECIALS = {"pad": "<|pad|>", "unk": "<|unk|>", "bos": "<|bos|>", "eos": "<|endoftext|>"}
REQUESTS = [
    ("Review: the film was great. Sentiment:", " positive"),
    ("Question: 12 + 7 =", " 19"),
    ("The quick brown", " fox jumps."),
    ("", "The quick"),
]


def _tokenizer(vocab_size: int):
    from llmlab.tokenizers import train_tokenizer_from_iterator

    return train_tokenizer_from_iterator("bpe", CORPUS, vocab_size=vocab_size, special_tokens=SPECIALS)


@pytest.fixture(scope="module")
def tok():
    return _tokenizer(300)


def _lm(tok, seed: int, name: str) -> ModelLM:
    model = spread(tiny_llama(seed, vocab_size=tok.vocab_size, max_position_embeddings=64), std=0.2, seed=seed)
    return ModelLM(model, tok, batch_size=3, name=name)


def test_an_ensemble_of_a_model_with_itself_is_the_model(tok) -> None:
    lm = _lm(tok, 0, "a")
    for method in ("mean", "vote"):
        ens = EnsembleLM([lm, lm], method)
        assert isinstance(ens, EvalLM) and ens.name == f"{method}(a, a)"
        for (ll, greedy), (ll_ref, greedy_ref) in zip(
            ens.loglikelihood(REQUESTS), lm.loglikelihood(REQUESTS), strict=True
        ):
            assert ll == pytest.approx(ll_ref, abs=1e-5) and greedy == greedy_ref
    ens = EnsembleLM([lm, lm], "mean")
    for (got, greedy), (ref, greedy_ref) in zip(ens.score(REQUESTS), lm.score(REQUESTS), strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
        assert greedy == greedy_ref
    gen = [("The quick", {"until": ["\n"], "max_new_tokens": 6})]
    assert EnsembleLM([lm, lm], "vote").generate_until(gen) == lm.generate_until(gen)


def test_mean_of_two_models_is_the_average_probability_per_token(tok) -> None:
    a, b = _lm(tok, 0, "a"), _lm(tok, 1, "b")
    ens = EnsembleLM([a, b], "mean")
    lp_a, lp_b = [lp for lp, _ in a.score(REQUESTS)], [lp for lp, _ in b.score(REQUESTS)]
    lp_ens = [lp for lp, _ in ens.score(REQUESTS)]
    for got, x, y, (ll, _) in zip(lp_ens, lp_a, lp_b, ens.loglikelihood(REQUESTS), strict=True):
        hand = [math.log((math.exp(float(p)) + math.exp(float(q))) / 2) for p, q in zip(x, y, strict=True)]
        assert got.tolist() == pytest.approx(hand, abs=1e-5)
        assert ll == pytest.approx(sum(hand), abs=1e-4)
        assert ll != pytest.approx(float(x.sum()), abs=1e-3) and ll != pytest.approx(float(y.sum()), abs=1e-3)


def test_mean_needs_one_tokenizer(tok) -> None:
    other = _lm(_tokenizer(280), 0, "other")
    with pytest.raises(ValueError, match="models a and other have different tokenizers"):
        EnsembleLM([_lm(tok, 0, "a"), other], "mean")
    EnsembleLM([_lm(tok, 0, "a"), other], "vote")  # voting compares answers, not tokens
    with pytest.raises(ValueError, match="unknown ensemble method 'median'"):
        EnsembleLM([other], "median")


class TableLM:
    """An EvalLM stub: fixed log-likelihoods per choice text and fixed generations."""

    def __init__(self, name: str, scores: dict[str, float], answer: str = "") -> None:
        self.name, self.scores, self.answer, self.calls = name, scores, answer, 0

    def loglikelihood(self, requests):
        self.calls += 1
        return [(self.scores[cont.strip()], False) for _, cont in requests]

    def score(self, requests):
        self.calls += 1
        return [(torch.tensor([self.scores[cont.strip()]]), False) for _, cont in requests]

    def generate_until(self, requests):
        return [self.answer for _ in requests]

    def tokenizer_fingerprint(self) -> str:
        return "same"


def test_majority_and_ties() -> None:
    assert majority(["x", "y", "y"]) == "y"
    assert majority(["x", "y"]) == "x" and majority(["y", "x", "x", "y"]) == "y"  # ties: the earliest member
    members = [TableLM("p", {}, "7"), TableLM("q", {}, "8"), TableLM("r", {}, "8")]
    assert EnsembleLM(members, "vote").generate_until([("1+", {"until": []})]) == ["8"]


def test_the_runner_takes_the_votes(tmp_path: Path) -> None:
    docs = [{"q": f"q{i}", "label": i % 2} for i in range(4)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "t.yaml").write_text(
        "task: vote_toy\ndataset: {path: docs.jsonl}\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\n"
        "doc_to_choice: [nay, aye]\ndoc_to_target: '{{label}}'\nmetrics: [acc]\n"
    )
    # two members prefer "nay" a little, one prefers "aye" by far: mean picks "aye", the vote "nay"
    members = [TableLM("p", {"nay": -1.0, "aye": -1.1}), TableLM("q", {"nay": -1.0, "aye": -1.2}),
               TableLM("r", {"nay": -9.0, "aye": -0.5})]  # fmt: skip
    task = load_task(tmp_path / "t.yaml")
    vote = evaluate(EnsembleLM(members, "vote"), [task])["vote_toy"]
    mean = evaluate(EnsembleLM(members, "mean"), [task])["vote_toy"]
    assert vote["acc"] == 0.5 and mean["acc"] == 0.5  # labels alternate nay/aye
    assert all(
        m.calls == 2 for m in members
    )  # one scoring call per member and run: the vote reuses loglikelihood's scores, mean scores once
    single = {m.name: evaluate(m, [task])["vote_toy"]["acc"] for m in members}
    assert single == {"p": 0.5, "q": 0.5, "r": 0.5}
    for method, expected in (("vote", [0, 0, 0, 0]), ("mean", [1, 1, 1, 1])):  # vote: 2 members against 1
        (tmp_path / method).mkdir()
        evaluate(EnsembleLM(members, method), [task], samples_path=tmp_path / method)
        lines = (tmp_path / method / "samples_vote_toy.jsonl").read_text().splitlines()
        assert [json.loads(line)["pred"] for line in lines] == expected


def test_average_state_dicts_uniform_weighted_and_mismatches() -> None:
    a = {"w": torch.tensor([1.0, 2.0]), "h": torch.tensor([1.0], dtype=torch.bfloat16), "n": torch.tensor([3])}
    b = {"w": torch.tensor([3.0, 6.0]), "h": torch.tensor([2.0], dtype=torch.bfloat16), "n": torch.tensor([3])}
    soup = average_state_dicts([a, b])
    assert soup["w"].tolist() == [2.0, 4.0] and soup["h"].dtype == torch.bfloat16 and soup["h"].item() == 1.5
    assert torch.equal(soup["n"], a["n"])
    assert average_state_dicts(iter([a, b]), weights=[3, 1])["w"].tolist() == [1.5, 3.0]  # normalised weights
    with pytest.raises(ValueError, match=r"state dict 1: w has shape \(3,\), state dict 0 \(2,\)"):
        average_state_dicts([a, {**b, "w": torch.zeros(3)}])
    with pytest.raises(ValueError, match=r"state dict 1 has other parameters than state dict 0 \(e.g. n\)"):
        average_state_dicts([a, {"w": b["w"], "h": b["h"]}])
    with pytest.raises(ValueError, match="non-float tensor n differs"):
        average_state_dicts([a, {**b, "n": torch.tensor([4])}])
    with pytest.raises(ValueError, match="2 weights for 1 checkpoints"):
        average_state_dicts([a], weights=[1, 1])
    with pytest.raises(ValueError, match="weights must be finite"):
        average_state_dicts([a, b], weights=[0, 0])


def test_eval_run_cli_ensembles(tmp_path: Path, tok, capsys) -> None:
    """`llmlab eval run --model A --model B --ensemble mean|vote` goes through EnsembleLM; A with itself = A."""
    from cli_helpers import run_cli

    from llmlab.models import save_llmlab

    for seed, name in ((0, "a"), (1, "b")):
        save_llmlab(_lm(tok, seed, name).model, tmp_path / name)
        tok.save(tmp_path / name)
    docs = [{"q": f"The quick brown {w}", "label": i % 2} for i, w in enumerate(["fox", "dog", "cat", "film"])]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (tmp_path / "t.yaml").write_text(
        "task: cli_toy\ndataset: {path: docs.jsonl}\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\n"
        "doc_to_choice: [jumps, sleeps]\ndoc_to_target: '{{label}}'\nmetrics: [acc]\n"
    )

    def run(*models: str, ensemble: str | None = None) -> dict:
        args = ["eval", "run", "--tasks", str(tmp_path / "t.yaml"), "--json"]
        args += [a for m in models for a in ("--model", str(tmp_path / m))]
        code, out, err = run_cli(args + (["--ensemble", ensemble] if ensemble else []), capsys)
        assert code == 0, err
        return json.loads(out)

    single = run("a")
    same = run("a", "a", ensemble="mean")
    assert single["results"]["cli_toy"]["acc"] == same["results"]["cli_toy"]["acc"]
    assert run("a", "b", ensemble="vote")["results"]["cli_toy"]["n"] == 4
    code, _, err = run_cli(["eval", "run", "--tasks", str(tmp_path / "t.yaml"), "--model", str(tmp_path / "a"),
                            "--model", str(tmp_path / "b")], capsys)  # fmt: skip
    assert code == 2 and "--ensemble" in err
