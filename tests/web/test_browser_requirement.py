"""Whether a missing Chromium skips the dashboard tests or fails them: with CI=true it fails them
(CI must run every test), elsewhere it skips them, as a missing PostgreSQL does (conftest.py).
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.app import in_ci
from tests.support.browser import chromium_missing

ROOT = Path(__file__).resolve().parents[2]


def test_a_missing_chromium_fails_in_ci():
    with pytest.raises(pytest.fail.Exception, match="CI=true expects Chromium"):
        chromium_missing(in_ci=True)


def test_a_missing_chromium_is_skipped_outside_ci():
    with pytest.raises(pytest.skip.Exception, match="Chromium is missing"):
        chromium_missing(in_ci=False)


def run_a_dashboard_test(ci: str | None) -> subprocess.CompletedProcess[str]:
    """One dashboard test in a pytest of its own, pointed at a Chromium that does not exist."""
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "PYTEST_ADDOPTS", "PYTEST_PLUGINS")}
    env.update(CHROMIUM_PATH="/nonexistent/chromium", TEST_BACKENDS="sqlite")
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rfEs",
            "tests/web/test_dashboard.py::test_signing_in_opens_the_overview_and_a_wrong_token_is_refused",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("false", False),
        ("0", False),
        ("", False),
        (None, False),
    ],
)
def test_ci_counts_as_set_when_it_says_true_1_or_yes(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected


@pytest.mark.database  # the dashboard test it runs takes a SQLite database
def test_with_ci_true_the_dashboard_tests_fail_when_chromium_is_missing():
    result = run_a_dashboard_test("true")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "CI=true expects Chromium at /nonexistent/chromium" in result.stdout, result.stdout[-3000:]
    assert "1 error" in result.stdout and "skipped" not in result.stdout, result.stdout[-3000:]


@pytest.mark.database  # the dashboard test it runs takes a SQLite database
def test_without_ci_the_dashboard_tests_are_skipped_when_chromium_is_missing():
    result = run_a_dashboard_test(None)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 skipped" in result.stdout and "Chromium is missing" in result.stdout, result.stdout[-3000:]
