"""An operator command loads only what it uses (connector/cli.py imports inside each command): `connector
resync` queues its first row without paying for the web server, the web app, the processing stages, the message
builders or Segment's transport. Asserted by module name, not by seconds, so a loaded machine cannot fail it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

# What a process runs to record the modules its command loaded, once the command has finished.
RECORD_MODULES = """
import atexit, json, sys
record = sys.argv[1]
atexit.register(lambda: open(record, "w").write(json.dumps(sorted(sys.modules))))
sys.argv = ["connector", *sys.argv[2:]]
from connector.cli import main
main()
"""
# Nothing an operator command needs: the web server and app, the inbound and processing stages, segment
# evaluation, the message builders and Segment's transport.
NOT_FOR_OPERATOR_COMMANDS = (
    "uvicorn",
    "starlette",
    "httpx",
    "segment.analytics",
    "connector.web",
    "connector.inbound",
    "connector.processing",
    "connector.segments",
    "connector.outbound.build",
    "connector.outbound.transport",
)


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "connector.db"
    shutil.copy(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


def modules_loaded_by(tmp_path: Path, database_url: str, *command: str) -> list[str]:
    record = tmp_path / "modules.json"
    env = {**os.environ, "DATABASE_URL": database_url}
    finished = subprocess.run(
        [sys.executable, "-c", RECORD_MODULES, str(record), *command], env=env, capture_output=True, timeout=120
    )
    assert finished.returncode == 0, finished.stderr.decode()[-3000:]
    loaded: list[str] = json.loads(record.read_text())
    return loaded


@pytest.mark.parametrize("command", [("resync",), ("resync", "--force"), ("journal", "retry-failed"), ("migrate",)])
def test_an_operator_command_loads_neither_the_web_server_nor_the_stages_it_does_not_run(tmp_path, sqlite_url, command):
    loaded = modules_loaded_by(tmp_path, sqlite_url, *command)
    unwanted = [name for name in loaded if name.startswith(NOT_FOR_OPERATOR_COMMANDS)]
    assert unwanted == []
