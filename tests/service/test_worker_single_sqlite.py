"""SQLite runs one worker, with real `connector` processes on one SQLite file: a second
`connector worker`, or a `connector serve` with its embedded worker, says so and exits with
an error while the first goes on processing; once the first has stopped (SIGTERM) or died
(SIGKILL), a new one starts. `connector serve --no-worker` runs no worker, so it starts beside one.
"""

import os
import shutil
from pathlib import Path

import httpx
import pytest

from connector.core import spec
from connector.core.db import create_engine
from connector.core.models import JournalEntry, utcnow
from connector.inbound.writer import journal_row
from tests.support.app import ADMIN_TOKEN, API_KEY, basic_auth, free_port, wait_until
from tests.support.database import append_to_journal, journal_statuses
from tests.support.processes import Process, wait_for_http, wait_for_log

journal = JournalEntry.__table__
REFUSAL = "SQLite runs one worker"


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "connector.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def process_env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CONNECTOR_API_KEY": API_KEY,
        "LOG_LEVEL": "INFO",
    }


def start_worker(database_url: str, log: Path) -> Process:
    worker = Process(["worker"], process_env(database_url), log)
    wait_for_log(worker, '"worker.start"', timeout=60)  # a loaded machine starts Python slowly
    return worker


def refused(process: Process) -> str:
    """The output of a process that must exit on its own with an error: it is asserted to have done so."""
    code = process.popen.wait(timeout=60)
    output = process.output()
    assert code != 0, output[-3000:]
    return output


async def processes_a_message(database_url: str, message_id: str) -> None:
    """A message appended to the journal is processed: some worker is at work on the file."""
    engine = create_engine(database_url)
    try:
        now = utcnow()
        message = spec.normalise_message({"type": "track", "userId": "u-1", "event": "E", "messageId": message_id}, now)
        await append_to_journal(engine, [journal_row(message, now, "api")])

        async def processed() -> bool:
            return [row.status for row in await journal_statuses(engine) if row.message_id == message_id] == [
                "processed"
            ]

        await wait_until(processed, timeout=30, interval=0.1)
    finally:
        await engine.dispose()


async def test_a_second_worker_on_one_sqlite_file_says_so_and_exits_while_the_first_goes_on(sqlite_url, tmp_path):
    first = start_worker(sqlite_url, tmp_path / "first.log")
    try:
        second = Process(["worker"], process_env(sqlite_url), tmp_path / "second.log")
        assert REFUSAL in refused(second)
        assert first.popen.poll() is None
        await processes_a_message(sqlite_url, "after-the-refusal")
        assert first.terminate() < 30 and first.popen.returncode == 0, first.output()[-3000:]

        third = start_worker(sqlite_url, tmp_path / "third.log")
        try:
            await processes_a_message(sqlite_url, "after-the-first-stopped")
        finally:
            third.terminate()
        assert third.popen.returncode == 0, third.output()[-3000:]
    finally:
        first.kill()


async def test_a_worker_killed_with_sigkill_leaves_no_lock_behind(sqlite_url, tmp_path):
    killed = start_worker(sqlite_url, tmp_path / "killed.log")
    killed.kill()
    successor = start_worker(sqlite_url, tmp_path / "successor.log")
    try:
        await processes_a_message(sqlite_url, "after-the-crash")
    finally:
        successor.terminate()
    assert successor.popen.returncode == 0, successor.output()[-3000:]


async def test_serve_with_its_embedded_worker_is_refused_beside_a_worker_and_without_it_runs(sqlite_url, tmp_path):
    worker = start_worker(sqlite_url, tmp_path / "worker.log")
    try:
        port = free_port()
        embedded = Process(["serve", "--port", str(port)], process_env(sqlite_url), tmp_path / "embedded.log")
        assert REFUSAL in refused(embedded)

        web = Process(["serve", "--no-worker", "--port", str(port)], process_env(sqlite_url), tmp_path / "web.log")
        try:
            wait_for_http(f"http://127.0.0.1:{port}", web)
            async with httpx.AsyncClient(timeout=30) as http:
                answer = await http.post(
                    f"http://127.0.0.1:{port}/v1/track",
                    headers=basic_auth(),
                    json={"userId": "u-2", "event": "E", "messageId": "through-the-web"},
                )
            assert answer.status_code == 200, answer.text
        finally:
            web.terminate()
        assert worker.popen.poll() is None
        await processes_a_message(sqlite_url, "beside-the-web")
    finally:
        worker.terminate()


async def test_a_worker_is_refused_beside_serve_with_its_embedded_worker(sqlite_url, tmp_path):
    port = free_port()
    web = Process(["serve", "--port", str(port)], process_env(sqlite_url), tmp_path / "web.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}", web)
        worker = Process(["worker"], process_env(sqlite_url), tmp_path / "worker.log")
        assert REFUSAL in refused(worker)
        await processes_a_message(sqlite_url, "by-the-embedded-worker")
        async with httpx.AsyncClient(timeout=5) as http:
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
    finally:
        web.terminate()


def test_several_web_processes_with_embedded_workers_are_refused_on_sqlite(sqlite_url, tmp_path):
    env = {**process_env(sqlite_url), "WEB_CONCURRENCY": "2"}
    web = Process(["serve", "--port", str(free_port())], env, tmp_path / "web.log")
    assert REFUSAL in refused(web)
