"""Where the dashboard tests find Chromium, and what they do when it is missing."""

import os
from pathlib import Path
from typing import NoReturn

import pytest
from playwright.async_api import ViewportSize

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}
MISSING_CHROMIUM = "Debian's Chromium is missing: apt-get install -y chromium (or `make browser`)"


def chromium_missing(in_ci: bool) -> NoReturn:
    """No Chromium: with CI=true the browser tests fail (CI must run them); elsewhere they are skipped."""
    if in_ci:
        pytest.fail(f"CI=true expects Chromium at {CHROMIUM}: {MISSING_CHROMIUM}", pytrace=False)
    pytest.skip(MISSING_CHROMIUM)
