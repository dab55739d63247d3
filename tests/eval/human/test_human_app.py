"""The rating API through FastAPI's TestClient: the page, the flow of a rater, and 422 on bad votes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from human_helpers import OUTPUTS, all_ratings

from llmlab.eval.human.app import SideRatings, create_app
from llmlab.eval.human.store import CRITERIA, Study


@pytest.fixture
def client(study_path: Path) -> Iterator[TestClient]:
    with Study(study_path, seed=0) as study:
        yield TestClient(create_app(study))


def test_the_page_is_served_without_model_names(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "Fluency 流畅性" in page.text and "哪个回答更好" in page.text  # bilingual labels
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, nothing fetched from outside
    for name in OUTPUTS:
        assert name not in page.text
    assert client.get("/api/study").json() == {"criteria": list(CRITERIA), "pairs": 3}


def test_the_form_and_the_store_name_the_same_criteria() -> None:
    assert tuple(SideRatings.model_fields) == CRITERIA


def test_a_rater_rates_every_pair_then_is_done(client: TestClient) -> None:
    seen = []
    for _ in range(3):
        served = client.get("/api/next", params={"rater": "ann"}).json()
        assert served["done"] is False and set(served) == {
            "done",
            "assignment_id",
            "prompt",
            "left",
            "right",
            "progress",
        }
        assert "alpha" not in str(served["progress"])  # no model names outside the texts themselves
        seen.append(served["prompt"])
        vote = {
            "rater": "ann",
            "assignment_id": served["assignment_id"],
            "preference": "right",
            "ratings": all_ratings(4),
        }
        answer = client.post("/api/vote", json=vote)
        assert answer.status_code == 200 and answer.json()["ok"] is True
    assert len(set(seen)) == 3
    assert client.get("/api/next", params={"rater": "ann"}).json() == {
        "done": True,
        "progress": {"pairs": 3, "votes": 3, "raters": {"ann": 3}, "done": 3},
    }
    assert client.get("/api/next", params={"rater": "bob"}).json()["done"] is False
    assert client.get("/api/progress").json() == {"pairs": 3, "votes": 3, "raters": {"ann": 3}}


def _bad(vote: dict, **change: object) -> dict:
    return {**vote, **change}


def test_bad_votes_get_422(client: TestClient) -> None:
    served = client.get("/api/next", params={"rater": "ann"}).json()
    vote = {"rater": "ann", "assignment_id": served["assignment_id"], "preference": "tie", "ratings": all_ratings()}
    missing = all_ratings()
    del missing["right"]["safety"]
    high = all_ratings()
    high["left"]["accuracy"] = 6
    text = all_ratings()
    text["left"]["fluency"] = "5"
    for bad in (
        _bad(vote, preference="both"),
        _bad(vote, ratings=missing),
        _bad(vote, ratings=high),
        _bad(vote, ratings=text),
        _bad(vote, rater="  "),
        _bad(vote, rater="bob"),  # not bob's assignment
        _bad(vote, assignment_id=999),
        _bad(vote, model="alpha"),  # unknown field
    ):
        assert client.post("/api/vote", json=bad).status_code == 422, bad
    assert client.post("/api/vote", json=vote).status_code == 200
    assert client.post("/api/vote", json=vote).status_code == 422  # the same pair twice
    assert client.get("/api/next", params={"rater": ""}).status_code == 422
    assert client.get("/api/progress").json()["votes"] == 1


def test_on_loopback_only_loopback_host_names_are_served(study_path: Path) -> None:
    """A page elsewhere that rebinds its DNS name to 127.0.0.1 sends its own Host header: refused (400)."""
    from llmlab.eval.human.app import LOOPBACK_HOSTS

    with Study(study_path) as study:
        app = create_app(study, allowed_hosts=LOOPBACK_HOSTS)
        assert TestClient(app, base_url="http://127.0.0.1:8000").get("/api/study").status_code == 200
        assert TestClient(app, base_url="http://localhost:8000").get("/").status_code == 200
        assert TestClient(app, base_url="http://attacker.example").get("/api/study").status_code == 400
