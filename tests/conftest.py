"""Test fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL is the one at TEST_POSTGRES_URL (default: the local server, database
`test`). A fresh database is created for the session and migrated with Alembic;
tables are truncated between tests. With CI=true an unreachable PostgreSQL fails
the run; elsewhere its tests are skipped with the reason.
"""

import asyncio
import shutil
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import structlog
from sqlmodel import SQLModel

from connector.core.db import create_engine
from connector.core.environment import Environment
from connector.core.runtime import Runtime
from connector.service.migrate import upgrade
from connector.web.app import create_app
from tests.support.app import BACKENDS, POSTGRES_URL, LiveServer, in_ci, make_env
from tests.support.pooler import PgBouncer, pgbouncer_binary

# The fake Segment API fixture (the outbound tests), the fake Public API ones (the workspace setup).
pytest_plugins = ["tests.support.fake_segment", "tests.support.fake_public_api"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that need a database (they take `database_url`, or a fixture built on it) or start
    processes: `make test-fast` runs the others, which need neither a database nor a browser."""
    for item in items:
        if {"database_url", "postgres_database", "sqlite_template"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.database)


@pytest.fixture(autouse=True)
def logging_as_a_fresh_process() -> None:
    """Each test starts with structlog as a fresh process has it (its defaults: every level, console lines) and
    with no module's logger bound yet: a module's logger keeps the configuration it first logged with
    (cache_logger_on_first_use), so a level set by an earlier test (an in-process CLI run at LOG_LEVEL=WARNING)
    would otherwise silence the info lines a later test reads."""
    structlog.reset_defaults()
    for name, module in list(sys.modules.items()):
        log = getattr(module, "log", None) if name.startswith("connector.") else None
        if isinstance(log, structlog._config.BoundLoggerLazyProxy):
            vars(log).pop("bind", None)


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
        if in_ci():
            pytest.fail(f"CI=true expects PostgreSQL: {message}", pytrace=False)
        pytest.skip(message)
    url = POSTGRES_URL.rsplit("/", 1)[0] + "/" + name
    upgrade(url)
    yield url
    asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def pgbouncer(postgres_database: str) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction mode in front of the test PostgreSQL (tests/support/pooler.py). With
    CI=true a missing pgbouncer binary fails the run (`.ci/run` installs it); elsewhere its tests are skipped."""
    binary = pgbouncer_binary()
    if binary is None:
        message = "pgbouncer is not installed (apt-get install pgbouncer)"
        if in_ci():
            pytest.fail(f"CI=true expects PgBouncer: {message}", pytrace=False)
        pytest.skip(message)
    bouncer = PgBouncer(binary, POSTGRES_URL)
    bouncer.start()
    yield bouncer
    bouncer.close()


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        if request.node.get_closest_marker("postgres_only"):
            pytest.skip("needs PostgreSQL")
        path = tmp_path / "connector.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_all(url))
    return url


async def _truncate_all(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(f'"{table.name}"' for table in SQLModel.metadata.sorted_tables)
    async with engine.begin() as conn:
        await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    await engine.dispose()


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
    runtime: Runtime = app.state.runtime
    return runtime


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as http:
        yield http


@pytest.fixture
def live_server_factory(database_url: str) -> Iterator[Callable[..., LiveServer]]:
    """Start live servers with env overrides, e.g. live_server_factory(run_worker_in_web=True)."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        server = LiveServer(make_env(database_url, **overrides)).__enter__()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.__exit__()
