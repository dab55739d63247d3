"""Replay the two raters' recorded blind judgments through the rating page in headless Chromium (Playwright).

    python docs/human-ab/drive_raters.py http://127.0.0.1:8765

Each rater judged a sheet (`raterN-sheet.json`: 18 items, a prompt and two outputs A/B in random order, no
model names) and wrote `raterN-judgments.json` (a preference and 1-5 scores per output and criterion). This
script types each rater's name into the page, and for every pair the server shows finds that rater's judgment of
the same two texts, maps A/B to the sides shown, ticks the scores and the preference, and submits.
"""

import json
import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

HERE = Path(__file__).resolve().parent
url = sys.argv[1]
CRITERIA = ["fluency", "coherence", "relevance", "accuracy", "safety"]
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load(rater):
    sheet = json.load(open(f"{HERE}/{rater}-sheet.json"))
    judg = {j["item"]: j for j in json.load(open(f"{HERE}/{rater}-judgments.json"))}
    return {(s["prompt"], s["A"], s["B"]): judg[s["item"]] for s in sheet}


with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
    for rater in ("rater1", "rater2"):
        table = load(rater)
        page = browser.new_context().new_page()
        page.goto(url)
        page.fill("#rater", rater)
        page.click("#start")
        for done in range(18):
            page.wait_for_function(
                "n => document.getElementById('progress').textContent.includes(n + ' / 18')", arg=done
            )
            prompt, left, right = (page.text_content(s) for s in ("#prompt", "#left-text", "#right-text"))
            if (prompt, left, right) in table:
                j, side_of = table[(prompt, left, right)], {"A": "left", "B": "right"}
            else:
                j, side_of = table[(prompt, right, left)], {"A": "right", "B": "left"}
            for letter, side in side_of.items():
                for c in CRITERIA:
                    page.check(f"#{side}-{c}-{j[letter][c]}")
            page.check(f"#pref-{'tie' if j['preference'] == 'tie' else side_of[j['preference']]}")
            page.click("#submit")
        page.wait_for_selector("#done", state="visible")
        print(f"{rater}: 18 votes entered")
    browser.close()
