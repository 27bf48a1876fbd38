"""The worker outlives a database outage: while the database is unreachable it logs `worker.error`
and waits; once the database is back it goes on, and a message posted afterwards is processed.

The outage is real: on SQLite the database file is moved away (a directory stands in its place, so
no connection can open it) and the pooled connections are dropped; on PostgreSQL the database stops
accepting connections and its sessions are terminated.
"""

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from connector.core.models import JournalEntry
from connector.core.runtime import Runtime
from connector.service import worker
from tests.support.app import POSTGRES_URL, admin_auth, basic_auth, wait_until
from tests.support.database import journal_statuses

journal = JournalEntry.__table__


@contextlib.asynccontextmanager
async def sqlite_unreachable(runtime: Runtime, database_url: str) -> AsyncIterator[None]:
    path = Path(database_url.split("///", 1)[1])
    away = path.with_name(path.name + ".away")
    os.rename(path, away)
    path.mkdir()  # "unable to open database file" for every new connection
    await runtime.engine.dispose()  # the pooled connections still hold the moved file open
    try:
        yield
    finally:
        path.rmdir()
        os.rename(away, path)


@contextlib.asynccontextmanager
async def postgres_unreachable(runtime: Runtime, database_url: str) -> AsyncIterator[None]:
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            name,
        )
        try:
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
    finally:
        await admin.close()


def unreachable(runtime: Runtime, database_url: str):
    outage = postgres_unreachable if database_url.startswith("postgresql") else sqlite_unreachable
    return outage(runtime, database_url)


async def processed(client, runtime, user_id: str) -> bool:
    statuses = {row.status for row in await journal_statuses(runtime.engine) if row.message_id == f"m-{user_id}"}
    if statuses != {"processed"}:
        return False
    response = await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())
    return response.status_code == 200 and response.json()["traits"] == {"plan": user_id}


async def post_identify(client, user_id: str) -> None:
    response = await client.post(
        "/segment",
        headers=basic_auth(),
        json={"type": "identify", "userId": user_id, "messageId": f"m-{user_id}", "traits": {"plan": user_id}},
    )
    assert response.status_code == 200, response.text


class Output:
    """The process's output as a deploy's log stream shows it (read through pytest's capfd): the
    loggers may be configured and cached by earlier tests, so the written lines are what counts."""

    def __init__(self, capfd):
        self.capfd = capfd
        self.text = ""

    def read(self) -> str:
        self.text += self.capfd.readouterr().out
        return self.text

    def lines_with(self, event: str, after: int = 0) -> list[str]:
        return [line for line in self.read()[after:].splitlines() if event in line]


async def test_the_worker_logs_the_outage_and_processes_what_comes_after_the_database_is_back(
    client, runtime, database_url, capfd
):
    stop = asyncio.Event()
    output = Output(capfd)
    output.read()
    task = asyncio.create_task(worker.run_forever(runtime, stop))
    try:
        await post_identify(client, "before")
        await wait_until(lambda: processed(client, runtime, "before"))
        assert not output.lines_with("worker.error")

        async with unreachable(runtime, database_url):
            await wait_until(lambda: output.lines_with("worker.error"), timeout=20)
            assert (await client.get("/readyz")).status_code == 503  # the outage is real
        errors = len(output.read())
        assert not task.done(), "the worker died of the outage"

        await post_identify(client, "after")
        await wait_until(lambda: processed(client, runtime, "after"), timeout=30)
        # the round that processed it went on to its end (the log line follows the commit)
        await wait_until(lambda: output.lines_with("worker.batch.done", after=errors))
        assert not task.done(), "the worker died of the outage"
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    [error, *_] = output.lines_with("worker.error")
    assert '"level": "error"' in error or "[error" in error  # JSON in a deploy, console text under pytest
    assert len(output.lines_with("worker.stop")) == 1
