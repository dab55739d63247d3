"""`llmlab eval human`: creating studies (from outputs and by generating), the report, one-line errors."""

from __future__ import annotations

import json
import sqlite3
import statistics
from pathlib import Path

import pytest
import torch
from cli_helpers import run_cli
from human_helpers import PROMPTS, all_ratings, write_outputs
from tiny_models import tiny_gpt

from llmlab.eval.human.report import agreement
from llmlab.eval.human.store import Study, Vote
from llmlab.tokenizers import train_tokenizer_from_iterator


def _vote_all(study_path: Path, rater: str, choose: dict[str, str]) -> None:
    """`rater` votes on every pair: `choose[prompt]` names the preferred model (or 'tie'); all ratings 4 for the
    preferred output, 2 for the other (3 both for a tie)."""
    with Study(study_path, seed=1) as study:
        while (served := study.next_assignment(rater)) is not None:
            left_model = served["left"].split(":")[0]
            want = choose[served["prompt"]]
            preference = "tie" if want == "tie" else ("left" if want == left_model else "right")
            ratings = all_ratings(3)
            if preference != "tie":
                ratings = {side: {c: 4 if side == preference else 2 for c in ratings[side]} for side in ratings}
            study.record_vote(rater, served["assignment_id"], preference, ratings)


def test_create_vote_and_report(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = tmp_path / "study.sqlite"
    args = ["eval", "human", "--study", str(study)]
    outputs = [a for value in write_outputs(tmp_path) for a in ("--outputs", value)]
    code, out, err = run_cli([*args, *outputs], capsys)
    assert code == 0 and "2 models (alpha, beta), 3 prompts, 3 pairs per rater" in out, err
    _vote_all(study, "ann", dict(zip(PROMPTS, ["alpha", "alpha", "beta"], strict=True)))
    _vote_all(study, "bob", dict(zip(PROMPTS, ["alpha", "tie", "beta"], strict=True)))
    code, out, err = run_cli([*args, "--report", "--json", "--bootstrap-iters", "200"], capsys)
    assert code == 0, err
    report = json.loads(out)
    assert report["votes"] == 6 and report["raters"] == ["ann", "bob"]
    board = report["leaderboard"]
    assert [row["model"] for row in board] == ["alpha", "beta"]
    assert (board[0]["wins"], board[0]["ties"], board[0]["losses"]) == (3, 1, 2)
    assert board[0]["win_rate"] == pytest.approx(3.5 / 6)
    # alpha: 3.5 of 6 wins + the prior's 0.5 of 1 -> odds 4 : 3
    assert board[0]["strength"] / board[1]["strength"] == pytest.approx(4 / 3, rel=1e-6)
    low, high = board[0]["elo_ci"]
    assert low < board[0]["elo"] < high
    fluency = report["ratings"]["alpha"]["fluency"]  # alpha's scores: 4, 4, 2 (ann), 4, 3, 2 (bob)
    # one mean per output (the two raters' scores of alpha's answer to each prompt): 4, 3.5, 2
    assert fluency["n"] == 3 and fluency["ratings"] == 6 and fluency["mean"] == pytest.approx(19 / 6)
    assert fluency["stderr"] == pytest.approx(statistics.stdev([4, 3.5, 2]) / 3**0.5)
    # preferences: ann (alpha, alpha, beta) vs bob (alpha, tie, beta): p_o = 2/3, p_e = (1*1 + 2*1) / 9 -> kappa 1/2
    (cohen,) = report["agreement"]["cohen"]
    assert cohen["items"] == 3 and cohen["kappa"] == pytest.approx(0.5)
    assert report["agreement"]["fleiss"]["items"] == 3 and report["agreement"]["fleiss"]["kappa"] is not None
    code, text, _ = run_cli([*args, "--report", "--bootstrap-iters", "200"], capsys)
    assert code == 0 and "Bradley-Terry leaderboard" in text and "Cohen's kappa ann vs bob: 0.50" in text


def test_fleiss_uses_pairs_every_rater_voted_on() -> None:
    votes = [
        Vote("ann", 1, "a", "b", "left", {}),
        Vote("bob", 1, "b", "a", "right", {}),
        Vote("ann", 2, "a", "b", "right", {}),
        Vote("bob", 2, "a", "b", "right", {}),
        Vote("ann", 3, "a", "b", "tie", {}),
    ]  # pair 3: ann only
    result = agreement(votes, ["a", "b"])
    assert result["fleiss"]["items"] == 2 and result["cohen"][0]["items"] == 2
    assert result["cohen"][0]["kappa"] == pytest.approx(1.0)  # both items agree (same winner, other sides shown)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--outputs", "alpha=ALPHA"], "two or more models"),
        (["--outputs", "alpha=ALPHA", "--outputs", "alpha=BETA"], "given twice"),
        (["--outputs", "alpha=ALPHA", "--outputs", "beta=SHORT"], "prompts of 'beta' differ"),
        (["--outputs", "alpha=ALPHA", "--model", "m"], "pick one"),
        (["--model", "a=x", "--model", "b=y"], "add --prompts"),
        (["--prompts", "p.txt"], "add --model"),
        (["--json"], "add --report"),
        (["--model", "a=x", "--model", "b=y", "--prompts", "p.txt", "--template", "chatml"], "add --chat"),
        (["--report"], "not an llmlab study"),
        (["--outputs", "alpha=ALPHA", "--outputs", "beta=MISSING"], "no such outputs file"),
    ],
)
def test_mistakes_are_one_line_errors(
    extra: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    write_outputs(tmp_path)
    (tmp_path / "short.jsonl").write_text(json.dumps({"prompt": PROMPTS[0], "output": "x"}) + "\n")
    names = {"ALPHA": "alpha.jsonl", "BETA": "beta.jsonl", "SHORT": "short.jsonl", "MISSING": "missing.jsonl"}
    extra = [next((e.replace(k, str(tmp_path / v)) for k, v in names.items() if k in e), e) for e in extra]
    code, out, err = run_cli(["eval", "human", "--study", str(tmp_path / "s.sqlite"), *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "s.sqlite").exists()


def test_prompts_and_model_paths_are_checked_before_any_model_loads(
    checkpoints: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    prompts = tmp_path / "p.txt"
    prompts.write_text("Hello\nWorld\nHello\n", encoding="utf-8")
    models = ["--model", f"a={checkpoints[0]}", "--model", f"b={checkpoints[1]}"]
    code, _, err = run_cli(
        ["eval", "human", "--study", str(tmp_path / "s.sqlite"), *models, "--prompts", str(prompts)], capsys
    )
    assert code == 2 and "'Hello' is given twice" in err and "generating" not in err, err
    prompts.write_text("Hello\nWorld\n", encoding="utf-8")
    models[-1] = f"b={tmp_path / 'nowhere'}"
    code, _, err = run_cli(
        ["eval", "human", "--study", str(tmp_path / "s.sqlite"), *models, "--prompts", str(prompts)], capsys
    )
    assert code == 2 and "nowhere" in err and "generating" not in err, err
    assert not (tmp_path / "s.sqlite").exists()


def test_never_overwrites_a_file_llmlab_did_not_create(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    notes = tmp_path / "notes.db"
    notes.write_text("keep me")
    outputs = [a for value in write_outputs(tmp_path) for a in ("--outputs", value)]
    code, _, err = run_cli(["eval", "human", "--study", str(notes), *outputs, "--overwrite"], capsys)
    assert code == 2 and "did not create" in err and notes.read_text() == "keep me"
    alpha = str(tmp_path / "alpha.jsonl")
    code, _, err = run_cli(["eval", "human", "--study", alpha, *outputs], capsys)
    assert code == 2 and "is one of the inputs" in err


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two tiny random GPTs (seeds 0 and 1) sharing a byte-level BPE tokenizer, saved as llmlab checkpoints."""
    tok = train_tokenizer_from_iterator("bpe", ["the quick brown fox jumps over the lazy dog " * 20], vocab_size=280)
    folders = []
    for seed in (0, 1):
        folder = tmp_path_factory.mktemp(f"m{seed}")
        model = tiny_gpt(seed, vocab_size=tok.vocab_size, block_size=128, tie_embeddings=False)
        with torch.no_grad():  # logits of a few units: varied text, not a run of one token
            model.lm_head.weight.mul_(20)
        model.save_pretrained(folder)
        tok.save(folder)
        folders.append(folder)
    return folders


def test_create_by_generating_with_two_tiny_models(
    checkpoints: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from llmlab.generate import generate_text
    from llmlab.hub import load_for_inference

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the quick\n\nlazy dog\n")
    study = tmp_path / "gen.sqlite"
    models = ["--model", f"zero={checkpoints[0]}", "--model", f"one={checkpoints[1]}"]
    command = ["eval", "human", "--study", str(study), *models, "--prompts", str(prompts), "-n", "6"]
    code, out, err = run_cli(command, capsys)
    assert code == 0 and "2 models (zero, one), 2 prompts" in out, err
    loaded = load_for_inference(checkpoints[1])
    expected = generate_text(
        loaded.model, loaded.tokenizer, "lazy dog", 6, temperature=0.0, eos_token_id=loaded.tokenizer.eos_id
    ).strip()
    with sqlite3.connect(study) as conn:
        got = conn.execute(
            "SELECT o.text FROM outputs o JOIN models m ON m.id = o.model_id "
            "JOIN prompts p ON p.id = o.prompt_id WHERE m.name = 'one' AND p.text = 'lazy dog'"
        ).fetchone()
    assert got == (expected,) and expected  # greedy, the same text as the API's


def test_chat_answers_equal_llmlab_generate_chat(checkpoints: list[Path], capsys: pytest.CaptureFixture) -> None:
    from llmlab.config.sampling import SamplingConfig
    from llmlab.hub import load_for_inference
    from llmlab.recipes.eval_human import generate_answer

    code, out, err = run_cli(
        [
            "generate",
            "-c",
            str(checkpoints[0]),
            "--chat",
            "--template",
            "chatml",
            "-p",
            "lazy dog",
            "-t",
            "0",
            "-n",
            "8",
        ],
        capsys,
    )
    assert code == 0, err
    answer = generate_answer(
        load_for_inference(checkpoints[0]), "lazy dog", SamplingConfig(max_new_tokens=8, temperature=0.0), "chatml"
    )
    assert answer == out.strip() and answer
