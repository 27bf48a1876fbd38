"""The process environment (Heroku config vars) and the inbound API key it may set."""

import asyncio

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from connector.core.environment import DEFAULT_DATABASE_URL, Database, Environment
from connector.core.runtime import Runtime
from connector.web.app import create_app
from tests.support.app import admin_auth, basic_auth, make_env

CONFIG_VARS = (
    "DATABASE_URL",
    "CONNECTOR_ENV",
    "ADMIN_TOKEN",
    "CONNECTOR_API_KEY",
    "PORT",
    "RUN_WORKER_IN_WEB",
    "WEB_CONCURRENCY",
    "LOG_LEVEL",
    "DYNO",
    "DATABASE_MAX_CONNECTIONS",
    "DATABASE_CONNECTION_POOL_URL",
    "DATABASE_POOLER",
)


@pytest.fixture
def config_vars(monkeypatch):
    """A clean process environment; set config vars with monkeypatch.setenv."""
    for name in CONFIG_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@db.example:5432/d1", "postgresql+asyncpg://u:p@db.example:5432/d1"),
        ("postgresql://u:p@db.example/d1?sslmode=require", "postgresql+asyncpg://u:p@db.example/d1?sslmode=require"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
        ("sqlite:///./local.db", "sqlite+aiosqlite:///./local.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_database_url_is_mapped_to_the_async_drivers(config_vars, given, expected):
    config_vars.setenv("DATABASE_URL", given)
    env = Environment(_env_file=None)
    assert env.database_url == expected
    assert env.is_postgres == expected.startswith("postgresql")


def test_defaults_run_on_a_bare_machine(config_vars):
    env = Environment(_env_file=None)
    assert env.database_url == DEFAULT_DATABASE_URL and env.environment == "development"
    assert env.admin_token is None and env.run_worker_in_web is True and env.port == 8000


def test_config_vars_are_read(config_vars):
    for name, value in {
        "PORT": "5123",
        "RUN_WORKER_IN_WEB": "false",
        "WEB_CONCURRENCY": "3",
        "LOG_LEVEL": "DEBUG",
        "CONNECTOR_API_KEY": "key-from-heroku",
    }.items():
        config_vars.setenv(name, value)
    env = Environment(_env_file=None)
    assert (env.port, env.run_worker_in_web, env.web_concurrency, env.log_level, env.connector_api_key) == (
        5123,
        False,
        3,
        "DEBUG",
        "key-from-heroku",
    )


def test_production_requires_an_admin_token(config_vars):
    config_vars.setenv("CONNECTOR_ENV", "production")
    with pytest.raises(ValidationError, match="ADMIN_TOKEN"):
        Environment(_env_file=None)
    config_vars.setenv("ADMIN_TOKEN", "a-long-admin-token")
    env = Environment(_env_file=None)
    assert env.environment == "production" and env.admin_token == "a-long-admin-token"


def test_a_heroku_dyno_is_production_unless_connector_env_says_otherwise(config_vars):
    config_vars.setenv("DYNO", "web.1")
    with pytest.raises(ValidationError, match="ADMIN_TOKEN"):
        Environment(_env_file=None)
    config_vars.setenv("ADMIN_TOKEN", "a-long-admin-token")
    assert Environment(_env_file=None).environment == "production"
    config_vars.setenv("CONNECTOR_ENV", "development")
    assert Environment(_env_file=None).environment == "development"


def test_unknown_environment_is_refused(config_vars):
    config_vars.setenv("CONNECTOR_ENV", "staging")
    with pytest.raises(ValidationError):
        Environment(_env_file=None)


async def post_identify(app, key: str) -> int:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        response = await http.post("/v1/identify", headers=basic_auth(key), json={"userId": "u1"})
        return response.status_code


async def test_connector_api_key_becomes_the_inbound_key(database_url):
    generated_app = create_app(make_env(database_url, connector_api_key=None))
    async with generated_app.router.lifespan_context(generated_app):
        generated = generated_app.state.runtime.api_key
        assert generated.startswith("hsc_") and len(generated) > 30
        assert await post_identify(generated_app, generated) == 200

    configured_app = create_app(make_env(database_url, connector_api_key="key-from-config-vars"))
    async with configured_app.router.lifespan_context(configured_app):
        assert await post_identify(configured_app, "key-from-config-vars") == 200
        assert await post_identify(configured_app, generated) == 401
        transport = httpx.ASGITransport(app=configured_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            rotate = await http.post("/api/api-key/rotate", headers=admin_auth())
        assert rotate.status_code == 409  # the config var is in charge
        assert await post_identify(configured_app, "key-from-config-vars") == 200


async def test_generated_api_key_survives_restarts_and_rotates(database_url):
    keys = []
    for _ in range(2):
        app = create_app(make_env(database_url, connector_api_key=None))
        async with app.router.lifespan_context(app):
            keys.append(app.state.runtime.api_key)
    assert keys[0] == keys[1]
    app = create_app(make_env(database_url, connector_api_key=None))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            rotated = (await http.post("/api/api-key/rotate", headers=admin_auth())).json()["api_key"]
        assert rotated != keys[0]
        assert await post_identify(app, keys[0]) == 401
        assert await post_identify(app, rotated) == 200


@pytest.mark.parametrize("environment", ["development", "production"])
async def test_the_welcome_shows_secrets_in_full_in_development_only(database_url, capsys, environment):
    from connector import cli

    env = make_env(database_url, CONNECTOR_ENV=environment, connector_api_key="hsc_welcome-key-0123456789")
    assert env.environment == environment
    await cli._print_welcome(env)
    printed = capsys.readouterr().out
    shown = environment == "development"  # elsewhere stdout is the log stream
    assert ("hsc_welcome-key-0123456789" in printed) == shown and (env.admin_token in printed) == shown
    assert "6789" in printed and "/v1/identify" in printed  # the masked key ends as the key does


async def test_database_errors_do_not_carry_the_values_of_their_statement(database_url):
    import sqlalchemy as sa

    from connector.core.db import create_engine

    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            with pytest.raises(sa.exc.DBAPIError) as raised:
                await conn.execute(
                    sa.text("SELECT * FROM no_such_table WHERE name = :name"), {"name": "hsc_secret-0123456789"}
                )
    finally:
        await engine.dispose()
    assert "no_such_table" in str(raised.value) and "hsc_secret-0123456789" not in str(raised.value)


@pytest.mark.postgres_only
async def test_a_process_opens_no_more_database_connections_than_database_max_connections(database_url):
    runtime = await Runtime.start(make_env(database_url, database_max_connections=4))
    held = []
    try:
        for _ in range(4):
            held.append(await runtime.engine.connect())
        backend_pids = {await conn.scalar(sa.text("SELECT pg_backend_pid()")) for conn in held}
        assert len(backend_pids) == 4
        with pytest.raises(asyncio.TimeoutError):  # the fifth waits for one of the four
            await asyncio.wait_for(runtime.engine.connect(), timeout=1.0)
        await held.pop().close()
        held.append(await asyncio.wait_for(runtime.engine.connect(), timeout=5.0))
    finally:
        for conn in held:
            await conn.close()
        await runtime.stop()


def test_database_max_connections_below_four_is_refused_naming_it(config_vars):
    config_vars.setenv("DATABASE_MAX_CONNECTIONS", "2")
    with pytest.raises(ValidationError, match="database_max_connections"):
        Environment(_env_file=None)


def test_on_heroku_with_connection_pooling_web_and_worker_use_the_pooler_and_the_release_the_direct_url(config_vars):
    config_vars.setenv("DATABASE_URL", "postgres://u:p@direct.example:5432/d1")
    config_vars.setenv("DATABASE_CONNECTION_POOL_URL", "postgres://u:p@pooler.example:6000/d1")
    env = Environment(_env_file=None)
    assert env.service_database == Database("postgresql+asyncpg://u:p@pooler.example:6000/d1", pooler=True)
    assert env.direct_database == Database("postgresql+asyncpg://u:p@direct.example:5432/d1", pooler=False)


def test_database_pooler_transaction_says_database_url_is_a_pooler(config_vars):
    config_vars.setenv("DATABASE_URL", "postgres://u:p@pooler.supabase.example:6543/postgres")
    config_vars.setenv("DATABASE_POOLER", "transaction")
    env = Environment(_env_file=None)
    expected = Database("postgresql+asyncpg://u:p@pooler.supabase.example:6543/postgres", pooler=True)
    assert env.service_database == expected and env.direct_database == expected


def test_a_plain_database_url_keeps_its_prepared_statements(config_vars):
    config_vars.setenv("DATABASE_URL", "postgres://u:p@direct.example:5432/d1")
    env = Environment(_env_file=None)
    assert env.service_database == Database("postgresql+asyncpg://u:p@direct.example:5432/d1", pooler=False)


def test_an_unknown_database_pooler_is_refused_naming_it(config_vars):
    config_vars.setenv("DATABASE_POOLER", "session")
    with pytest.raises(ValidationError, match="database_pooler"):
        Environment(_env_file=None)
