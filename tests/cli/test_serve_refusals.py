"""`make run` when something is in the way, and what a deploy's log stream looks like: `connector serve` on a
taken port, or on a SQLite file another connector works on, prints one line naming the problem and the fix
and exits non-zero, before any banner and without a traceback; once running, every line it logs is JSON."""

import json
import os
import shutil
import socket
from pathlib import Path

import httpx
import pytest

from tests.support.app import ADMIN_TOKEN, API_KEY, free_port
from tests.support.processes import Process, wait_for_http, wait_for_log


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "connector.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def serve_env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": database_url, "ADMIN_TOKEN": ADMIN_TOKEN, "CONNECTOR_API_KEY": API_KEY}


def refusal(process: Process) -> list[str]:
    """The non-empty lines of a process that must exit on its own with an error."""
    code = process.popen.wait(timeout=60)
    output = process.output()
    assert code == 1, output[-3000:]
    assert "Traceback" not in output
    assert "dashboard" not in output  # refused before the banner
    return [line for line in output.splitlines() if line.strip()]


def test_serve_on_a_taken_port_says_so_in_one_line_with_the_port_to_use_instead(sqlite_url, tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        lines = refusal(Process(["serve", "--port", str(port)], serve_env(sqlite_url), tmp_path / "serve.log"))
    assert len(lines) == 1, lines
    assert f"port {port} on 127.0.0.1 is in use" in lines[0]
    assert f"PORT={port + 1} make run" in lines[0]


def test_serve_on_a_sqlite_file_another_connector_works_on_says_so_in_one_line(sqlite_url, tmp_path):
    worker = Process(["worker"], serve_env(sqlite_url), tmp_path / "worker.log")
    try:
        wait_for_log(worker, '"worker.start"', timeout=60)
        lines = refusal(Process(["serve", "--port", str(free_port())], serve_env(sqlite_url), tmp_path / "serve.log"))
    finally:
        worker.terminate()
    assert len(lines) == 1, lines
    assert "SQLite runs one worker" in lines[0]
    assert str(tmp_path / "connector.db") in lines[0]
    assert "DATABASE_URL=" in lines[0]


def test_every_line_serve_logs_after_its_banner_is_json_with_an_event_name(sqlite_url, tmp_path):
    port = free_port()
    web = Process(["serve", "--port", str(port)], {**serve_env(sqlite_url), "LOG_LEVEL": "INFO"}, tmp_path / "web.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}", web)
        with socket.create_connection(("127.0.0.1", port)) as raw:  # uvicorn logs a warning of its own
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            raw.recv(1024)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        wait_for_log(web, "Invalid HTTP request received.")
    finally:
        web.terminate()
    banner, _, logged = web.output().partition("\n\n{")
    assert "dashboard" in banner
    lines = ("{" + logged).splitlines()
    events = [json.loads(line) for line in lines if line.strip()]
    assert all(isinstance(event.get("event"), str) and event["event"] for event in events), lines
    assert {"event": "uvicorn.error.log", "message": "Invalid HTTP request received."}.items() <= next(
        event for event in events if event["event"] == "uvicorn.error.log"
    ).items()
