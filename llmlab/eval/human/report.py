"""The `llmlab eval human --report`: a Bradley-Terry leaderboard with bootstrap intervals, mean ratings per
model and criterion, and inter-rater agreement — as a dict (`study_report`) and as text (`format_report`)."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from typing import Any

from llmlab.eval.human.ranking import (
    bootstrap_elo,
    bradley_terry,
    cohen_kappa,
    elo_scale,
    fleiss_kappa,
    wins_matrix,
)
from llmlab.eval.human.store import CRITERIA, Study, Vote
from llmlab.eval.metrics import mean_stderr

DEFAULT_PRIOR = 1.0  # one virtual tie per model pair: finite strengths when a model never wins or never loses
BOOTSTRAP_ITERS = 1000


def _outcome(vote: Vote, index: dict[str, int]) -> tuple[int, int, float]:
    """(left model index, right model index, score of the left model: 1 won, 0 lost, 0.5 tie)."""
    return index[vote.left], index[vote.right], {"left": 1.0, "right": 0.0, "tie": 0.5}[vote.preference]


def _winner(vote: Vote) -> str:
    """The preferred model's name, or 'tie': the same label whichever side each rater saw it on."""
    return {"left": vote.left, "right": vote.right}.get(vote.preference, "tie")


def leaderboard(votes: list[Vote], models: list[str], *, prior: float, iters: int, seed: int) -> list[dict]:
    """Rows sorted by strength: model, strength (sums to 1), elo, elo_ci (95%), wins, ties, losses, win_rate."""
    index = {name: i for i, name in enumerate(models)}
    outcomes = [_outcome(v, index) for v in votes]
    strength = bradley_terry(wins_matrix(outcomes, len(models)), prior=prior)
    elo = elo_scale(strength)
    ci = bootstrap_elo(outcomes, len(models), prior=prior, iters=iters, seed=seed) if outcomes else None
    record = {name: Counter() for name in models}
    for vote in votes:
        winner = _winner(vote)
        for name in (vote.left, vote.right):
            record[name]["ties" if winner == "tie" else ("wins" if winner == name else "losses")] += 1
    rows = []
    for i, name in enumerate(models):
        games = sum(record[name].values())
        rows.append(
            {
                "model": name,
                "strength": float(strength[i]),
                "elo": float(elo[i]),
                "elo_ci": None if ci is None else [float(ci[i, 0]), float(ci[i, 1])],
                "wins": record[name]["wins"],
                "ties": record[name]["ties"],
                "losses": record[name]["losses"],
                "win_rate": (record[name]["wins"] + 0.5 * record[name]["ties"]) / games if games else None,
            }
        )
    return sorted(rows, key=lambda row: -row["strength"])


def mean_ratings(votes: list[Vote], models: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {criterion: {"mean", "stderr", "n", "ratings"}}}: each output's ratings (one model's answer to one
    prompt, rated once per pair it appears in and per rater) are averaged first, then the mean and standard error
    are taken over the model's outputs (`n`) — the ratings of one output are not independent samples."""
    per_output: dict[str, dict[str, dict[int, list[int]]]] = {m: {c: {} for c in CRITERIA} for m in models}
    for vote in votes:
        for model, given in vote.ratings.items():
            for criterion, score in given.items():
                per_output[model][criterion].setdefault(vote.prompt_id, []).append(score)
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for model in models:
        result[model] = {}
        for criterion in CRITERIA:
            outputs = per_output[model][criterion]
            values = [sum(v) / len(v) for v in outputs.values()]
            mean, stderr = mean_stderr(values) if values else (None, math.nan)
            stderr = None if math.isnan(stderr) else stderr  # one output: no standard error
            n_ratings = sum(len(v) for v in outputs.values())
            result[model][criterion] = {"mean": mean, "stderr": stderr, "n": len(values), "ratings": n_ratings}
    return result


def agreement(votes: list[Vote], models: list[str]) -> dict[str, Any]:
    """Cohen's kappa per rater pair (preferences; quadratic-weighted on ratings) and Fleiss' kappa (preferences,
    over the pairs every rater voted on)."""
    categories = [*models, "tie"]
    by_rater: dict[str, dict[int, Vote]] = defaultdict(dict)
    for vote in votes:
        by_rater[vote.rater][vote.pair_id] = vote
    raters = sorted(by_rater)
    cohen = []
    for first, second in itertools.combinations(raters, 2):
        common = sorted(set(by_rater[first]) & set(by_rater[second]))
        pref = cohen_kappa(
            [_winner(by_rater[first][p]) for p in common],
            [_winner(by_rater[second][p]) for p in common],
            labels=categories,
        )
        keys = [(p, m, c) for p in common for m in by_rater[first][p].ratings for c in CRITERIA]
        weighted = cohen_kappa(
            [by_rater[first][p].ratings[m][c] for p, m, c in keys],
            [by_rater[second][p].ratings[m][c] for p, m, c in keys],
            weights="quadratic",
            labels=[1, 2, 3, 4, 5],
        )
        cohen.append({"raters": [first, second], "items": len(common), "kappa": pref, "weighted_ratings": weighted})
    shared = set.intersection(*(set(v) for v in by_rater.values())) if len(raters) >= 2 else set()
    items = [Counter(_winner(by_rater[r][p]) for r in raters) for p in sorted(shared)]
    return {
        "cohen": cohen,
        "fleiss": {"raters": len(raters), "items": len(items), "kappa": fleiss_kappa(items, categories)},
    }


def study_report(study: Study, *, prior: float = DEFAULT_PRIOR, iters: int = BOOTSTRAP_ITERS, seed: int = 0) -> dict:
    """Everything `--report` prints, as one JSON-ready dict."""
    votes, models = study.votes(), study.models()
    return {
        "study": str(study.path),
        "models": models,
        "pairs": study.pair_count(),
        "votes": len(votes),
        "raters": sorted({v.rater for v in votes}),
        "bradley_terry": {"prior": prior, "bootstrap_iters": iters, "seed": seed, "confidence": 0.95},
        "leaderboard": leaderboard(votes, models, prior=prior, iters=iters, seed=seed),
        "ratings": mean_ratings(votes, models),
        "agreement": agreement(votes, models),
    }


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def format_report(report: dict) -> str:
    """The report as aligned plain text."""
    bt = report["bradley_terry"]
    lines = [
        f"study {report['study']}: {len(report['models'])} models, {report['pairs']} pairs per rater, "
        f"{report['votes']} votes from {len(report['raters'])} raters",
        "",
        f"Bradley-Terry leaderboard (Bradley & Terry 1952, MM fit of Hunter 2004, prior {bt['prior']:g} virtual tie "
        f"per model pair; Elo-like scale, 95% CI from {bt['bootstrap_iters']} bootstrap resamples of the votes, "
        f"seed {bt['seed']})",
    ]
    width = max(len("model"), *(len(m) for m in report["models"]))
    lines.append(
        f"{'rank':>4}  {'model':<{width}}  {'strength':>8}  {'elo':>6}  {'95% CI':>15}  "
        f"{'W':>3} {'T':>3} {'L':>3}  win rate"
    )
    for rank, row in enumerate(report["leaderboard"], 1):
        ci = "n/a" if row["elo_ci"] is None else f"[{row['elo_ci'][0]:.0f}, {row['elo_ci'][1]:.0f}]"
        lines.append(
            f"{rank:>4}  {row['model']:<{width}}  {row['strength']:>8.3f}  {row['elo']:>6.0f}  {ci:>15}  "
            f"{row['wins']:>3} {row['ties']:>3} {row['losses']:>3}  {_num(row['win_rate'])}"
        )
    lines += ["", "Mean ratings, 1-5 (± standard error over the model's outputs; each output's ratings averaged first)"]
    lines.append(f"{'model':<{width}}  " + "  ".join(f"{c:>12}" for c in CRITERIA))
    for model, per in report["ratings"].items():
        cells = [f"{_num(s['mean'])} ± {_num(s['stderr'])}" for s in per.values()]
        lines.append(f"{model:<{width}}  " + "  ".join(f"{cell:>12}" for cell in cells))
    lines += ["", "Inter-rater agreement on preferences (kappa; n/a = undefined: no common items or no variation)"]
    for pair in report["agreement"]["cohen"]:
        lines.append(
            f"Cohen's kappa {pair['raters'][0]} vs {pair['raters'][1]}: {_num(pair['kappa'])} on "
            f"{pair['items']} common pairs; quadratic-weighted on ratings: {_num(pair['weighted_ratings'])}"
        )
    fleiss = report["agreement"]["fleiss"]
    lines.append(
        f"Fleiss' kappa ({fleiss['raters']} raters, {fleiss['items']} pairs rated by all): {_num(fleiss['kappa'])}"
    )
    return "\n".join(lines)
