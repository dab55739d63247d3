"""The study file: creation policy, round trips, assignments and votes."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from human_helpers import OUTPUTS, PROMPTS, all_ratings

from llmlab.eval.human.store import (
    CRITERIA,
    Study,
    check_study_outputs,
    create_study,
    is_study,
    read_outputs_jsonl,
)


def test_create_round_trips_models_prompts_and_outputs(study_path: Path) -> None:
    assert is_study(study_path)
    with sqlite3.connect(study_path) as conn:
        assert conn.execute("SELECT name FROM models ORDER BY id").fetchall() == [("alpha",), ("beta",)]
        assert [t for (t,) in conn.execute("SELECT text FROM prompts ORDER BY id")] == PROMPTS
        rows = conn.execute(
            "SELECT m.name, p.text, o.text FROM outputs o JOIN models m ON m.id = o.model_id "
            "JOIN prompts p ON p.id = o.prompt_id ORDER BY m.id, p.id"
        ).fetchall()
        assert rows == [(m, p, o) for m, outs in OUTPUTS.items() for p, o in zip(PROMPTS, outs, strict=True)]
        assert conn.execute("SELECT COUNT(*) FROM pairs").fetchone() == (3,)  # one model pair per prompt
    with Study(study_path) as study:
        assert study.models() == ["alpha", "beta"] and study.pair_count() == 3
        assert study.votes() == [] and study.progress() == {"pairs": 3, "votes": 0, "raters": {}}


def test_three_models_give_every_pair_per_prompt(tmp_path: Path) -> None:
    rows = {name: [(p, f"{name} {p}") for p in PROMPTS] for name in ("a", "b", "c")}
    with Study(create_study(tmp_path / "s.sqlite", rows)) as study:
        assert study.pair_count() == 3 * 3  # (a,b), (a,c), (b,c) for each prompt


def test_a_vote_round_trips_with_the_served_sides(study_path: Path) -> None:
    with Study(study_path, seed=3) as study:
        served = study.next_assignment("ann")
        ratings = {
            "left": dict(zip(CRITERIA, [1, 2, 3, 4, 5], strict=True)),
            "right": dict(zip(CRITERIA, [5, 4, 3, 2, 1], strict=True)),
        }
        study.record_vote("ann", served["assignment_id"], "left", ratings)
        (vote,) = study.votes()
    left = served["left"].split(":")[0]  # the fixed outputs start with their model's name
    right = served["right"].split(":")[0]
    assert {left, right} == {"alpha", "beta"}
    assert (vote.rater, vote.left, vote.right, vote.preference) == ("ann", left, right, "left")
    assert vote.ratings == {left: ratings["left"], right: ratings["right"]}
    with sqlite3.connect(study_path) as conn:  # the timestamps are stored
        assert conn.execute("SELECT created_at FROM votes").fetchone()[0].endswith("+00:00")


def test_a_rater_gets_each_pair_once_in_random_order_and_sides(study_path: Path) -> None:
    left_first = 0
    with Study(study_path, seed=0) as study:
        for rater in [f"r{i}" for i in range(12)]:
            prompts = []
            while (served := study.next_assignment(rater)) is not None:
                prompts.append(served["prompt"])
                left_first += served["left"].startswith("alpha")
                study.record_vote(rater, served["assignment_id"], "tie", all_ratings())
            assert sorted(prompts) == sorted(PROMPTS)
        assert study.progress("r0")["done"] == 3 and study.progress()["votes"] == 36
    assert 6 < left_first < 30  # both orders are shown (36 pairs, p = 1/2 each)


def test_bad_votes_are_refused(study_path: Path) -> None:
    with Study(study_path) as study:
        served = study.next_assignment("ann")
        with pytest.raises(ValueError, match="preference"):
            study.record_vote("ann", served["assignment_id"], "both", all_ratings())
        with pytest.raises(ValueError, match="score from 1 to 5"):
            study.record_vote("ann", served["assignment_id"], "left", all_ratings(6))
        with pytest.raises(ValueError, match="not served to rater 'bob'"):
            study.record_vote("bob", served["assignment_id"], "left", all_ratings())
        study.record_vote("ann", served["assignment_id"], "left", all_ratings())
        again = served["assignment_id"]
        with pytest.raises(ValueError, match="already voted"):
            study.record_vote("ann", again, "right", all_ratings())
        assert len(study.votes()) == 1


def test_outputs_must_share_prompts(tmp_path: Path) -> None:
    good = [(p, "x") for p in PROMPTS]
    with pytest.raises(ValueError, match="two or more models"):
        check_study_outputs({"a": good})
    with pytest.raises(ValueError, match="prompts of 'b' differ"):
        check_study_outputs({"a": good, "b": good[::-1]})
    with pytest.raises(ValueError, match="repeat a prompt"):
        check_study_outputs({"a": good + good[:1], "b": good + good[:1]})
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "p", "output": "o"}\n{"prompt": "p"}\n')
    with pytest.raises(ValueError, match="bad.jsonl line 2"):
        read_outputs_jsonl(bad)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_outputs_jsonl(tmp_path / "missing.jsonl")


def test_the_study_file_follows_the_output_policy(study_path: Path, tmp_path: Path) -> None:
    rows = {name: list(zip(PROMPTS, texts, strict=True)) for name, texts in OUTPUTS.items()}
    foreign = tmp_path / "notes.sqlite"
    foreign.write_text("my notes")
    with pytest.raises(ValueError, match="did not create"):
        create_study(foreign, rows, overwrite=True)
    assert foreign.read_text() == "my notes"
    with pytest.raises(ValueError, match="--overwrite"):
        create_study(study_path, rows)
    with Study(study_path) as study:  # a vote, then an asked-for overwrite starts afresh
        study.record_vote("ann", study.next_assignment("ann")["assignment_id"], "tie", all_ratings())
    create_study(study_path, rows, overwrite=True)
    with Study(study_path) as study:
        assert study.votes() == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.sqlite", "study.sqlite"]  # no temp left
    with pytest.raises(FileNotFoundError, match="not an llmlab study"):
        Study(foreign)
