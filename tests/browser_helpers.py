"""Headless Chromium for the browser tests: Debian's /usr/bin/chromium driven by Playwright (no browser download)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def require_chromium(chromium: Path = CHROMIUM) -> None:
    """Skip without Debian's chromium, naming the apt command; fail instead under CI (the env var CI is set)."""
    if not chromium.exists():
        reason = f"{chromium} is missing; install it with: sudo apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
