"""Test harness: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is the one at TEST_POSTGRES_URL (default: the local server, database
`test`). A fresh database is created for the session and migrated with Alembic;
tables are truncated between tests. With CI=true an unreachable PostgreSQL fails
the run; elsewhere its tests are skipped with the reason.
"""

import asyncio
import base64
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from sqlmodel import SQLModel

from connector.core import models
from connector.core.db import create_engine
from connector.core.environment import Environment
from connector.core.runtime import Runtime
from connector.processing import apply
from connector.service.migrate import upgrade
from connector.service.worker import run_once
from connector.web.app import create_app

pytest_plugins = ["fake_segment"]  # the fake Segment API fixture, for the outbound tests

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
BACKENDS = [b.strip() for b in os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]
ADMIN_TOKEN = "test-admin-token"
API_KEY = "test-api-key-0123456789"


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that need a database (they take `database_url`, or a fixture built on it) or start
    processes: `make test-fast` runs the others, which need neither a database nor a browser."""
    for item in items:
        if {"database_url", "postgres_database", "sqlite_template"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.database)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite+aiosqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """Create and migrate a throwaway database on the PostgreSQL server; drop it at the end."""
    import asyncpg

    admin_dsn = POSTGRES_URL.replace("postgresql+asyncpg://", "postgresql://")
    name = f"connector_test_{uuid.uuid4().hex[:10]}"

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin_dsn, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError) as error:
        message = f"PostgreSQL at {POSTGRES_URL} is unreachable: {error!r}"
        if _in_ci():
            pytest.fail(f"CI=true expects PostgreSQL: {message}", pytrace=False)
        pytest.skip(message)
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("needs PostgreSQL")
        path = tmp_path / "connector.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_all(url))
    return url


async def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


async def empty_tables(engine: Any, keep: set[str]) -> None:
    """Delete every row of every table but those named in `keep`: a fresh start between hypothesis examples."""
    async with engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name not in keep:
                await conn.execute(table.delete())


def make_env(database_url: str, **overrides: Any) -> Environment:
    values: dict[str, Any] = dict(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        connector_api_key=API_KEY,
        run_worker_in_web=False,
        environment="development",
        log_level="WARNING",
    )
    values.update(overrides)
    return Environment(_env_file=None, **values)


@pytest.fixture
def env(database_url: str) -> Environment:
    return make_env(database_url)


@pytest.fixture
async def app(env: Environment) -> AsyncIterator[Any]:
    application = create_app(env)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def runtime(app: Any) -> Runtime:
    return app.state.runtime


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as http:
        yield http


def basic_auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def admin_auth(token: str = ADMIN_TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def drain(runtime: Runtime) -> Any:
    """Run the worker until the journal is empty (the tests' stand-in for waiting)."""
    return await run_once(runtime)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerThread:
    """An ASGI app under uvicorn on a real localhost socket, in a thread with its own event loop."""

    def __init__(self, app: Any, name: str = "server"):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> "ServerThread":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"{self.name} did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


class LiveServer(ServerThread):
    """The connector itself, on a real socket."""

    def __init__(self, env: Environment):
        super().__init__(create_app(env), name="live server")


@pytest.fixture
def live_server_factory(database_url: str) -> Callable[..., LiveServer]:
    """Start live servers with env overrides, e.g. live_server_factory(run_worker_in_web=True)."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        server = LiveServer(make_env(database_url, **overrides)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.__exit__()


async def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.05) -> Any:
    """Poll an (async or sync) predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def stored_counts(runtime: Runtime) -> dict[str, int]:
    """Rows in the inbound and profile tables: what a refused request must leave untouched."""
    tables = [models.JournalEntry, models.User, models.UserIdentifier, models.Event, models.Account]
    async with runtime.engine.connect() as conn:
        return {
            table.__tablename__: await conn.scalar(sa.select(sa.func.count()).select_from(table.__table__))
            for table in tables
        }


def fail_for(monkeypatch: pytest.MonkeyPatch, message_id: str) -> None:
    """Make event storage raise for one messageId only, as a bug or a bad row would."""
    event_properties = apply.event_properties

    def failing(message: dict[str, Any]) -> Any:
        if message["messageId"] == message_id:
            raise RuntimeError(f"cannot store {message_id}")
        return event_properties(message)

    monkeypatch.setattr(apply, "event_properties", failing)


async def post_with_poison(client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three tracks of three users in one /v1/batch, the middle one ("poison") failing in processing (fail_for)."""
    fail_for(monkeypatch, "poison")
    batch = [
        {"type": "track", "userId": "u1", "event": "A", "messageId": "before"},
        {"type": "track", "userId": "u2", "event": "B", "messageId": "poison"},
        {"type": "track", "userId": "u3", "event": "C", "messageId": "after"},
    ]
    assert (await client.post("/v1/batch", headers=basic_auth(), json={"batch": batch})).status_code == 200


# Written out here rather than taken from connector.flow.journal: a message is pending while its queue row exists,
# failed when parked with a reason, processed otherwise.
JOURNAL_STATUS = sa.text(
    "SELECT message_id, type, error, CASE WHEN id IN (SELECT id FROM journal_queue) THEN 'pending' "
    "WHEN error IS NOT NULL THEN 'failed' ELSE 'processed' END AS status FROM inbound_journal ORDER BY id"
)


async def journal_statuses(engine: Any) -> list[Any]:
    """Every journal row's message_id, type, error and status, in journal order."""
    async with engine.connect() as conn:
        return list((await conn.execute(JOURNAL_STATUS)).all())


async def journal_status_counts(engine: Any) -> dict[str, int]:
    """How many journal rows are pending, processed and failed (absent: none); cheap enough to poll."""
    async with engine.connect() as conn:
        total, pending, failed = (
            await conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM inbound_journal), (SELECT count(*) FROM journal_queue), "
                    "(SELECT count(*) FROM inbound_journal WHERE error IS NOT NULL)"
                )
            )
        ).one()
    counts = {"pending": pending, "processed": total - pending - failed, "failed": failed}
    return {status: count for status, count in counts.items() if count}
