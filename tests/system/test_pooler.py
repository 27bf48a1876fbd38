"""Production behind a transaction-mode pooler (Heroku's connection pooling, Supabase, Neon: PgBouncer or a
work-alike), here Debian's PgBouncer in pool_mode=transaction (tests/support/pooler.py): each transaction may run on
another server connection, so a prepared statement or any session state kept past a transaction breaks the next.

Real processes, as Heroku runs them: `connector migrate` (twice), a web process and two `connector worker`
processes, segment-analytics-python posting to the web's /v1/batch, the fake Segment receiving what is sent.
"""

import asyncio
import threading
from typing import Any

import pytest
import sqlalchemy as sa
from segment.analytics import Client

from tests.support.app import API_KEY, free_port, wait_until
from tests.support.database import journal_status_counts
from tests.support.fake_segment import configure
from tests.support.pooler import PgBouncer
from tests.support.processes import Process, process_env, wait_for_http

pytestmark = pytest.mark.postgres_only

USERS = 300
TRACKS_PER_USER = 9  # with its identify, 3,000 messages


def run_migrate(env: dict[str, str], log: Any) -> Process:
    migrate = Process(["migrate"], env, log)
    migrate.popen.wait(timeout=120)
    return migrate


def start_web_and_two_workers(env: dict[str, str], tmp_path: Any) -> tuple[str, list[Process]]:
    """`connector serve --no-worker` (its URL, once it answers) and two `connector worker`s, as dynos."""
    port = free_port()
    web = Process(["serve", "--no-worker", "--port", str(port)], env, tmp_path / "web.log")
    workers = [Process(["worker"], env, tmp_path / f"worker-{n}.log") for n in range(2)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url, web)
    except BaseException:
        for process in (web, *workers):
            process.terminate()
        raise
    return url, [web, *workers]


def send(client: Client, users: range, pause: float = 0.0) -> list[str]:
    """Each user's identify and tracks through the library's public calls; the track messageIds, in order."""
    track_ids = []
    for user in users:
        client.identify(f"user-{user}", {"email": f"user-{user}@example.com", "plan": "pro"})
        for n in range(TRACKS_PER_USER):
            track_ids.append(f"user-{user}-track-{n}")
            client.track(f"user-{user}", "Clicked", {"n": n}, message_id=track_ids[-1])
        if pause:
            threading.Event().wait(pause)
    client.flush()
    return track_ids


def library(url: str, failures: list[Any]) -> Client:
    return Client(
        write_key=API_KEY,
        host=url,
        upload_interval=0.05,
        max_queue_size=50_000,
        on_error=lambda error, batch: failures.append((error, len(batch))),
    )


async def drained(runtime: Any) -> bool:
    async with runtime.engine.connect() as conn:
        queued = await conn.scalar(
            sa.text("SELECT (SELECT count(*) FROM journal_queue) + (SELECT count(*) FROM outbox)")
        )
    return queued == 0


def database_errors(process: Process) -> list[str]:
    return [
        line for line in process.output().splitlines() if '"level": "error"' in line or "prepared statement" in line
    ]


def assert_delivered(segment_api: Any, users: range, track_ids: list[str]) -> None:
    """Every user's identify and every track reached Segment. At least once: a send whose acknowledgement the
    pooler's restart cut off goes again once its claim's lease ends, with the same messageId (Segment dedupes)."""
    sent = segment_api.messages
    assert {message["userId"] for message in sent if message["type"] == "identify"} == {f"user-{u}" for u in users}
    assert {message["messageId"] for message in sent if message["type"] == "track"} == set(track_ids)


async def test_without_pooler_mode_the_second_migrate_through_the_pooler_fails_on_a_prepared_statement(
    database_url, pgbouncer: PgBouncer, tmp_path
):
    """What DATABASE_POOLER=transaction is for (the issue as reported): the pooler lends the first migrate's
    server connection, its named statements still on it, to the second."""
    env = process_env(pgbouncer.url(database_url))
    first = run_migrate(env, tmp_path / "first.log")
    assert first.popen.returncode == 0, first.output()[-3000:]
    second = run_migrate(env, tmp_path / "second.log")
    assert second.popen.returncode == 1
    assert 'prepared statement "__asyncpg_stmt_1__" already exists' in second.output()


async def test_migrate_twice_then_web_and_two_workers_through_the_pooler_process_and_deliver_every_message(
    runtime, segment_api, database_url, pgbouncer: PgBouncer, tmp_path
):
    pooled = pgbouncer.url(database_url)
    # The release: DATABASE_URL is the pooler itself, said so by DATABASE_POOLER.
    for attempt in range(2):
        migrate = run_migrate(process_env(pooled, DATABASE_POOLER="transaction"), tmp_path / f"migrate-{attempt}.log")
        assert migrate.popen.returncode == 0, migrate.output()[-3000:]
        assert "database is at the latest migration" in migrate.output()
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"])

    # Web and workers as on Heroku with connection pooling attached: DATABASE_CONNECTION_POOL_URL, nothing else.
    env = process_env(database_url, DATABASE_CONNECTION_POOL_URL=pooled)
    url, processes = start_web_and_two_workers(env, tmp_path)
    try:
        failures: list[Any] = []
        client = library(url, failures)
        track_ids = await asyncio.to_thread(send, client, range(USERS))
        await asyncio.to_thread(client.shutdown)
        assert failures == []
        await wait_until(lambda: drained(runtime), timeout=180, interval=0.5)
    finally:
        for process in processes:
            process.terminate()

    assert await journal_status_counts(runtime.engine) == {"processed": USERS * (1 + TRACKS_PER_USER)}
    assert_delivered(segment_api, range(USERS), track_ids)
    assert {str(process.log.name): database_errors(process) for process in processes} == {
        "web.log": [],
        "worker-0.log": [],
        "worker-1.log": [],
    }
    assert pgbouncer.process is not None and pgbouncer.process.poll() is None  # the pooler served throughout


async def test_the_pooler_restarting_mid_stream_loses_no_acknowledged_message(
    runtime, segment_api, database_url, pgbouncer: PgBouncer, tmp_path
):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"])
    # DATABASE_URL is the pooler (Supabase, Neon): DATABASE_POOLER says so.
    env = process_env(pgbouncer.url(database_url), DATABASE_POOLER="transaction")
    url, processes = start_web_and_two_workers(env, tmp_path)
    try:
        failures: list[Any] = []
        client = library(url, failures)
        sending = asyncio.create_task(asyncio.to_thread(send, client, range(USERS), 0.01))
        await wait_until(lambda: _journal_rows(runtime, at_least=500), timeout=60, interval=0.1)
        pgbouncer.stop()  # requests meanwhile answer 503; the library retries them
        await asyncio.sleep(2)
        pgbouncer.start()
        track_ids = await sending
        await asyncio.to_thread(client.shutdown)
        assert failures == []  # every batch was acknowledged in the end
        # A send round the restart cut off leaves its rows claimed until the lease ends (2 minutes).
        await wait_until(lambda: drained(runtime), timeout=200, interval=0.5)
        assert all(process.popen.poll() is None for process in processes)  # each rode out the restart
    finally:
        for process in processes:
            process.terminate()

    assert await journal_status_counts(runtime.engine) == {"processed": USERS * (1 + TRACKS_PER_USER)}
    assert_delivered(segment_api, range(USERS), track_ids)
    assert all("prepared statement" not in process.output() for process in processes)


async def _journal_rows(runtime: Any, at_least: int) -> bool:
    async with runtime.engine.connect() as conn:
        return bool(await conn.scalar(sa.text("SELECT count(*) FROM inbound_journal")) >= at_least)
