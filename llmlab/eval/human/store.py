"""A human A/B study: one SQLite file (stdlib `sqlite3`, WAL journal, one writer) holding everything.

Schema (`SCHEMA`; `meta.format` = `FORMAT`):

    meta(key PRIMARY KEY, value)                      format, created_by ("llmlab eval human"), created_at, seed
    models(id PRIMARY KEY, name UNIQUE)               the compared models, by the name the study was given
    prompts(id PRIMARY KEY, text)                     the prompts, in file order
    outputs(prompt_id, model_id, text)                each model's output for each prompt
    pairs(id PRIMARY KEY, prompt_id, model_a, model_b)   every unordered model pair per prompt (model_a < model_b)
    assignments(id PRIMARY KEY, rater, pair_id, left_model, right_model, served_at)
                                                      a pair served to a rater with its (random) left/right order
    votes(id PRIMARY KEY, assignment_id UNIQUE, rater, pair_id, left_model, right_model,
          preference IN ('left','right','tie'), created_at)     UNIQUE(rater, pair_id): one vote per rater and pair
    ratings(vote_id, model_id, criterion, score 1..5) both outputs' scores on the five criteria (`CRITERIA`)

Timestamps are UTC ISO 8601. The page never learns model names: it gets an assignment id and two texts, and the
vote names the assignment, so which model was on the left is recorded by the server, not claimed by the client.
The study file is created by llmlab (`create_study`, written beside and renamed into place) and then only
appended to; an existing file is never overwritten unless it is an llmlab study and `overwrite` was asked.
"""

from __future__ import annotations

import datetime
import itertools
import os
import random
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmlab.io import file_mode, make_temp_dir, read_jsonl_records, replace_path
from llmlab.io.sqlite import LockedSQLite

FORMAT = 1
CREATED_BY = "llmlab eval human"
CRITERIA = ("fluency", "coherence", "relevance", "accuracy", "safety")  # the seeds' rubric, each rated 1-5
PREFERENCES = ("left", "right", "tie")

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE models (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE prompts (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
CREATE TABLE outputs (
    prompt_id INTEGER NOT NULL REFERENCES prompts(id), model_id INTEGER NOT NULL REFERENCES models(id),
    text TEXT NOT NULL, PRIMARY KEY (prompt_id, model_id));
CREATE TABLE pairs (
    id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),
    model_a INTEGER NOT NULL REFERENCES models(id), model_b INTEGER NOT NULL REFERENCES models(id),
    CHECK (model_a < model_b), UNIQUE (prompt_id, model_a, model_b));
CREATE TABLE assignments (
    id INTEGER PRIMARY KEY, rater TEXT NOT NULL, pair_id INTEGER NOT NULL REFERENCES pairs(id),
    left_model INTEGER NOT NULL REFERENCES models(id), right_model INTEGER NOT NULL REFERENCES models(id),
    served_at TEXT NOT NULL);
CREATE TABLE votes (
    id INTEGER PRIMARY KEY, assignment_id INTEGER NOT NULL UNIQUE REFERENCES assignments(id),
    rater TEXT NOT NULL, pair_id INTEGER NOT NULL REFERENCES pairs(id),
    left_model INTEGER NOT NULL REFERENCES models(id), right_model INTEGER NOT NULL REFERENCES models(id),
    preference TEXT NOT NULL CHECK (preference IN ('left', 'right', 'tie')), created_at TEXT NOT NULL,
    UNIQUE (rater, pair_id));
CREATE TABLE ratings (
    vote_id INTEGER NOT NULL REFERENCES votes(id), model_id INTEGER NOT NULL REFERENCES models(id),
    criterion TEXT NOT NULL, score INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    PRIMARY KEY (vote_id, model_id, criterion));
"""


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_outputs_jsonl(path: str | os.PathLike) -> list[tuple[str, str]]:
    """(prompt, output) per line of a JSONL file of {"prompt": ..., "output": ...} objects.

    Raises:
        FileNotFoundError / ValueError: one line naming the file (and the line) and what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such outputs file; pass --outputs NAME=FILE.jsonl")
    rows = []
    for number, record in read_jsonl_records(path, fix="write one {'prompt','output'} object a line"):
        if not (
            isinstance(record, dict) and isinstance(record.get("prompt"), str) and isinstance(record.get("output"), str)
        ):
            raise ValueError(f"{path} line {number}: expected an object with string fields 'prompt' and 'output'")
        rows.append((record["prompt"], record["output"]))
    if not rows:
        raise ValueError(f"{path}: no outputs in the file; write one {{'prompt','output'}} object a line")
    return rows


def check_study_outputs(outputs: Mapping[str, Sequence[tuple[str, str]]]) -> list[str]:
    """Check that ≥2 models answered the same prompts in the same order; return the prompts.

    Raises:
        ValueError: one line naming the model whose prompts differ, or the missing second model.
    """
    if len(outputs) < 2:
        raise ValueError(f"a study compares two or more models, got {len(outputs)}; pass --outputs (or --model) twice")
    names = list(outputs)
    prompts = [p for p, _ in outputs[names[0]]]
    if len(set(prompts)) != len(prompts):
        raise ValueError(f"the outputs of {names[0]!r} repeat a prompt; give each prompt once")
    for name in names[1:]:
        other = [p for p, _ in outputs[name]]
        if other != prompts:
            raise ValueError(
                f"the prompts of {name!r} differ from those of {names[0]!r} ({len(other)} vs {len(prompts)} lines, "
                "or another text/order); give every model the same prompts in the same order"
            )
    return prompts


def is_study(path: str | os.PathLike) -> bool:
    """True when `path` is a SQLite file that `create_study` wrote (its meta says so)."""
    path = Path(path)
    if not path.is_file() or path.is_symlink():
        return False
    with open(path, "rb") as f:
        if f.read(16) != b"SQLite format 3\x00":
            return False
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = 'created_by'").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == CREATED_BY


def check_study_path(path: str | os.PathLike, *, overwrite: bool, sources: Iterable[str | os.PathLike] = ()) -> Path:
    """The output policy for a new study file (before anything is loaded): never an input, never a folder or
    link, and an existing file only with `overwrite` and only when it is an llmlab study; returns it resolved.

    Raises:
        ValueError: one line naming the path and what to do instead.
    """
    path = Path(path)
    for src in sources:
        if Path(src).resolve() == path.resolve():
            raise ValueError(f"{path} is one of the inputs; choose another --study")
    if path.is_symlink() or path.is_dir():
        raise ValueError(f"{path} exists and is not a study file; choose another --study")
    if path.exists():
        if not is_study(path):
            raise ValueError(
                f"{path} is a file llmlab did not create as a study; llmlab never replaces it — choose another --study"
            )
        if not overwrite:
            raise ValueError(f"{path} already holds a study; serve or report it, or pass --overwrite to replace it")
    return path.resolve()


def create_study(
    path: str | os.PathLike,
    outputs: Mapping[str, Sequence[tuple[str, str]]],
    *,
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a new study file from each model's (prompt, output) list; returns its path.

    The file is built in a temporary folder beside `path` and renamed into place (atomic), after
    `check_study_path` and `check_study_outputs` accepted everything.
    """
    dst = check_study_path(path, overwrite=overwrite)
    prompts = check_study_outputs(outputs)
    tmp = make_temp_dir(dst)
    try:
        built = tmp / dst.name
        with sqlite3.connect(built) as conn:
            conn.executescript(SCHEMA)
            meta = {"format": str(FORMAT), "created_by": CREATED_BY, "created_at": _now(), "seed": str(seed)}
            conn.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
            conn.executemany("INSERT INTO models (id, name) VALUES (?, ?)", enumerate(outputs, 1))
            conn.executemany("INSERT INTO prompts (id, text) VALUES (?, ?)", enumerate(prompts, 1))
            for model_id, rows in enumerate(outputs.values(), 1):
                conn.executemany(
                    "INSERT INTO outputs VALUES (?, ?, ?)", [(i, model_id, out) for i, (_, out) in enumerate(rows, 1)]
                )
            model_pairs = list(itertools.combinations(range(1, len(outputs) + 1), 2))
            conn.executemany(
                "INSERT INTO pairs (prompt_id, model_a, model_b) VALUES (?, ?, ?)",
                [(p, a, b) for p in range(1, len(prompts) + 1) for a, b in model_pairs],
            )
        conn.close()
        os.chmod(built, file_mode())
        for sidecar in (Path(f"{dst}-wal"), Path(f"{dst}-shm")):  # an old study's journal must not meet the new file
            sidecar.unlink(missing_ok=True)
        replace_path(built, dst)
    finally:
        for leftover in tmp.iterdir():
            leftover.unlink()
        tmp.rmdir()
    return dst


@dataclass
class Vote:
    """One stored vote, in the study's terms (model names, not sides)."""

    rater: str
    pair_id: int
    left: str
    right: str
    preference: str  # left | right | tie
    ratings: dict[str, dict[str, int]]  # model name -> criterion -> 1..5
    prompt_id: int = -1  # the prompt the pair belongs to (an output = a model's answer to one prompt)


class Study(LockedSQLite):
    """An open study file: serving pairs to raters and recording votes (thread-safe: one lock, one writer)."""

    def __init__(self, path: str | os.PathLike, *, seed: int | None = None) -> None:
        path = Path(path)
        if not is_study(path):
            raise FileNotFoundError(f"{path} is not an llmlab study; create one with --outputs or --model/--prompts")
        super().__init__(path)
        self._rng = random.Random(seed)

    def models(self) -> list[str]:
        """Model names in study order."""
        return [name for (name,) in self._all("SELECT name FROM models ORDER BY id")]

    def pair_count(self) -> int:
        return self._all("SELECT COUNT(*) FROM pairs")[0][0]

    def next_assignment(self, rater: str) -> dict[str, Any] | None:
        """A random pair `rater` has not voted on, with random left/right, recorded as an assignment; None when
        the rater has voted on every pair. Returns {assignment_id, prompt, left, right}."""
        with self._lock:
            todo = self._conn.execute(
                "SELECT id, prompt_id, model_a, model_b FROM pairs WHERE id NOT IN "
                "(SELECT pair_id FROM votes WHERE rater = ?)",
                (rater,),
            ).fetchall()
            if not todo:
                return None
            pair_id, prompt_id, a, b = self._rng.choice(todo)
            left, right = (a, b) if self._rng.random() < 0.5 else (b, a)
            cursor = self._conn.execute(
                "INSERT INTO assignments (rater, pair_id, left_model, right_model, served_at) VALUES (?, ?, ?, ?, ?)",
                (rater, pair_id, left, right, _now()),
            )
            text = "SELECT text FROM outputs WHERE prompt_id = ? AND model_id = ?"
            return {
                "assignment_id": cursor.lastrowid,
                "prompt": self._conn.execute("SELECT text FROM prompts WHERE id = ?", (prompt_id,)).fetchone()[0],
                "left": self._conn.execute(text, (prompt_id, left)).fetchone()[0],
                "right": self._conn.execute(text, (prompt_id, right)).fetchone()[0],
            }

    def record_vote(
        self, rater: str, assignment_id: int, preference: str, ratings: Mapping[str, Mapping[str, int]]
    ) -> int:
        """Store a vote on an assignment served to `rater`; `ratings` = {"left"|"right": {criterion: 1..5}}.
        Returns the vote id.

        Raises:
            ValueError: unknown assignment, another rater's assignment, a pair already voted on, or bad values.
        """
        if preference not in PREFERENCES:
            raise ValueError(f"preference must be one of {', '.join(PREFERENCES)}, got {preference!r}")
        for side in ("left", "right"):
            given = ratings.get(side, {})
            if set(given) != set(CRITERIA) or not all(isinstance(v, int) and 1 <= v <= 5 for v in given.values()):
                raise ValueError(f"{side} ratings must give each of {', '.join(CRITERIA)} a score from 1 to 5")
        with self._lock:
            row = self._conn.execute(
                "SELECT rater, pair_id, left_model, right_model FROM assignments WHERE id = ?", (assignment_id,)
            ).fetchone()
            if row is None or row[0] != rater:
                raise ValueError(f"assignment {assignment_id} was not served to rater {rater!r}; ask /api/next")
            _, pair_id, left, right = row
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                cursor = self._conn.execute(
                    "INSERT INTO votes (assignment_id, rater, pair_id, left_model, right_model, preference, created_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (assignment_id, rater, pair_id, left, right, preference, _now()),
                )
                vote_id = cursor.lastrowid
                self._conn.executemany(
                    "INSERT INTO ratings VALUES (?, ?, ?, ?)",
                    [
                        (vote_id, model, c, ratings[side][c])
                        for side, model in (("left", left), ("right", right))
                        for c in CRITERIA
                    ],
                )
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._conn.execute("ROLLBACK")
                raise ValueError(f"rater {rater!r} has already voted on this pair; ask /api/next") from None
            return int(vote_id)

    def progress(self, rater: str | None = None) -> dict[str, Any]:
        """{"pairs": per-rater total, "votes": all votes, "raters": {name: votes}, "done": this rater's votes}."""
        raters = dict(self._all("SELECT rater, COUNT(*) FROM votes GROUP BY rater ORDER BY rater"))
        result = {"pairs": self.pair_count(), "votes": sum(raters.values()), "raters": raters}
        if rater is not None:
            result["done"] = raters.get(rater, 0)
        return result

    def votes(self) -> list[Vote]:
        """Every vote with its ratings, by model name, in the order they were cast."""
        names = dict(self._all("SELECT id, name FROM models"))
        scores: dict[int, dict[str, dict[str, int]]] = {}
        for vote_id, model_id, criterion, score in self._all("SELECT vote_id, model_id, criterion, score FROM ratings"):
            scores.setdefault(vote_id, {}).setdefault(names[model_id], {})[criterion] = score
        rows = self._all(
            "SELECT v.id, v.rater, v.pair_id, v.left_model, v.right_model, v.preference, p.prompt_id "
            "FROM votes v JOIN pairs p ON p.id = v.pair_id ORDER BY v.id"
        )
        return [
            Vote(rater, pair_id, names[left], names[right], pref, scores.get(vote_id, {}), prompt_id)
            for vote_id, rater, pair_id, left, right, pref, prompt_id in rows
        ]
