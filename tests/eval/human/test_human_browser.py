"""End to end in headless Chromium (Playwright, Debian's /usr/bin/chromium): `llmlab eval human` serves a study
of two models' fixed outputs, two raters vote in the page, the votes land in SQLite, and `--report` ranks both
models with Bradley-Terry. Run with `-s` to see the recorded session's report."""

from __future__ import annotations

import re
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser_helpers import CHROMIUM, CHROMIUM_ARGS, require_chromium
from cli_helpers import run_cli
from human_helpers import OUTPUTS, PROMPTS, write_outputs

from llmlab.eval.human.store import CRITERIA

# What each rater prefers per prompt ("tie" or a model) and the scores given to the preferred/other output.
PLAN = {
    "ann": ({PROMPTS[0]: "alpha", PROMPTS[1]: "alpha", PROMPTS[2]: "beta"}, (5, 2)),
    "bob": ({PROMPTS[0]: "alpha", PROMPTS[1]: "tie", PROMPTS[2]: "beta"}, (4, 3)),
}

pytestmark = pytest.mark.slow


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture) -> Iterator[tuple[str, Path]]:
    """(URL, study path): a study created by the CLI and served by `llmlab eval human` in a subprocess."""
    require_chromium()
    study = tmp_path / "study.sqlite"
    outputs = [a for value in write_outputs(tmp_path) for a in ("--outputs", value)]
    assert run_cli(["eval", "human", "--study", str(study), *outputs], capsys)[0] == 0
    server = subprocess.Popen(
        [sys.executable, "-m", "llmlab", "eval", "human", "--study", str(study), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        first = server.stdout.readline() if server.stdout else ""  # "llmlab: rating page for S at http://..."
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", first)
        if not found:
            pytest.fail(f"the server did not start: {first}{server.stdout.read() if server.stdout else ''}")
        url = found.group(1)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/api/study", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the server at {url} does not answer")
            time.sleep(0.1)
        yield url, study
    finally:
        server.terminate()
        server.wait(timeout=10)


def _rate_all(page, rater: str) -> None:  # noqa: ANN001 - a Playwright Page
    choices, (good, bad) = PLAN[rater]
    page.fill("#rater", rater)
    page.click("#start")
    for done in range(len(PROMPTS)):
        page.wait_for_function("n => document.getElementById('progress').textContent.includes(n + ' / 3')", arg=done)
        prompt = page.text_content("#prompt")
        left_model = page.text_content("#left-text").split(":")[0]
        want = choices[prompt]
        side = "tie" if want == "tie" else ("left" if want == left_model else "right")
        for output_side in ("left", "right"):
            score = 3 if side == "tie" else (good if output_side == side else bad)
            for criterion in CRITERIA:  # both outputs are harmless: safety 5
                page.check(f"#{output_side}-{criterion}-{5 if criterion == 'safety' else score}")
        page.check(f"#pref-{side}")
        page.click("#submit")
    page.wait_for_selector("#done", state="visible")


def test_two_raters_in_chromium_then_the_report(
    served: tuple[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    url, study = served
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            for rater in PLAN:
                context = browser.new_context()  # a separate browser profile per rater
                page = context.new_page()
                page.goto(url)
                for name in OUTPUTS:  # anonymised: no model name on the page before the outputs are shown
                    assert name not in page.content()
                _rate_all(page, rater)
                context.close()
        finally:
            browser.close()

    with sqlite3.connect(study) as conn:
        rows = conn.execute(
            "SELECT v.rater, p.text, v.preference, l.name, r.name FROM votes v JOIN pairs pr ON pr.id = v.pair_id "
            "JOIN prompts p ON p.id = pr.prompt_id JOIN models l ON l.id = v.left_model "
            "JOIN models r ON r.id = v.right_model"
        ).fetchall()
        assert conn.execute("SELECT COUNT(*) FROM ratings").fetchone() == (6 * 2 * len(CRITERIA),)
    assert len(rows) == 6
    for rater, prompt, preference, left, right in rows:
        assert {"left": left, "right": right, "tie": "tie"}[preference] == PLAN[rater][0][prompt]

    monkeypatch.chdir(study.parent)
    command = ["eval", "human", "--study", study.name, "--report"]
    code, out, err = run_cli(command, capsys)
    assert code == 0, err
    assert "Bradley-Terry leaderboard" in out
    # leaderboard rows: rank, model, strength, elo, ...; alpha won 3, tied 1, lost 2 of its 6 comparisons
    assert re.findall(r"^\s+(\d)\s+(\w+)\s+0\.\d+\s+\d+", out, flags=re.M) == [("1", "alpha"), ("2", "beta")]
    assert re.search(r"alpha .* 3 +1 +2 +0\.58", out)
    with capsys.disabled():
        print(f"\n$ llmlab {' '.join(command)}\n{out}")


def test_missing_chromium_skips_locally_and_fails_under_ci(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        require_chromium(tmp_path / "chromium")
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        require_chromium(tmp_path / "chromium")


def test_a_port_in_use_is_a_one_line_error(study_path: Path, capsys: pytest.CaptureFixture) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        code, _, err = run_cli(["eval", "human", "--study", str(study_path), "--port", str(port)], capsys)
    assert code == 2 and f"cannot serve on 127.0.0.1:{port}" in err and len(err.strip().splitlines()) == 1
