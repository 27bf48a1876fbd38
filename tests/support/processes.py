"""`connector` commands as real processes, as Heroku runs them: each in its own process group
(a dyno), stopped with SIGTERM to the whole group, SIGKILL after Heroku's 30 s."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.app import ADMIN_TOKEN, API_KEY

HEROKU_GRACE_SECONDS = 30  # Heroku's SIGKILL follows SIGTERM after 30 s


def process_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production dyno on `database_url`, with `extra` config vars."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "CONNECTOR_ENV": "production",
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CONNECTOR_API_KEY": API_KEY,
        "LOG_LEVEL": "INFO",
        **extra,
    }


class Process:
    """A `connector` command in its own process group, its output in a file."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path):
        self.log = log
        with log.open("ab") as output:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "connector", *args],
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def terminate(self) -> float:
        """SIGTERM to every process of the group, as Heroku does; the seconds until it exited."""
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.popen.pid, signal.SIGTERM)
        try:
            self.popen.wait(timeout=HEROKU_GRACE_SECONDS + 5)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        return time.monotonic() - started

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def wait_for_http(url: str, process: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, process.output()[-3000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the web process did not answer within {timeout}s:\n{process.output()[-3000:]}")


def wait_for_log(process: Process, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.output():
        assert process.popen.poll() is None, process.output()[-3000:]
        assert time.monotonic() < deadline, f"{text} not logged within {timeout}s:\n{process.output()[-3000:]}"
        time.sleep(0.1)
