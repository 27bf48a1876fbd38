"""PostgreSQL refusing connections, as it does past its connection limit ("too many clients already", SQLSTATE
53300): the status says so as a warning naming the arithmetic to check, inbound answers 503 (Segment retries) and
stores nothing, and both recover once connections are allowed again.

The server's own limit (max_connections) cannot be lowered without a restart, so the connector connects as a role
of its own whose CONNECTION LIMIT is set to 0: PostgreSQL refuses it with the same SQLSTATE.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import async_playwright, expect
from sqlalchemy.engine import make_url

from connector.web.app import create_app
from tests.support.app import ADMIN_TOKEN, LiveServer, admin_auth, basic_auth, in_ci, make_env
from tests.support.browser import CHROMIUM, chromium_missing

pytestmark = pytest.mark.postgres_only


async def _admin(database_url: str, *statements: str) -> None:
    connection = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.fixture
def role(database_url: str) -> Iterator[str]:
    """A login role (not a superuser: PostgreSQL exempts those from connection limits) that may use every table."""
    name = f"connector_limited_{uuid.uuid4().hex[:8]}"
    asyncio.run(
        _admin(
            database_url,
            f'CREATE ROLE "{name}" LOGIN',
            f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{name}"',
            f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{name}"',
        )
    )
    yield name
    asyncio.run(_admin(database_url, f'DROP OWNED BY "{name}"', f'DROP ROLE "{name}"'))


@pytest.fixture
async def limited(database_url: str, role: str) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    """The connector connected as `role`, and a client of it."""
    url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
    application = create_app(make_env(url))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=30) as client:
            yield application.state.runtime, client


async def refuse_connections(runtime: Any, database_url: str, role: str, limit: int) -> None:
    await _admin(database_url, f'ALTER ROLE "{role}" CONNECTION LIMIT {limit}')
    await runtime.engine.dispose()  # the pooled connections were let in before: new ones meet the limit


async def test_refused_connections_are_a_status_warning_naming_the_arithmetic_and_inbound_answers_503(
    limited, database_url, role
):
    runtime, client = limited
    await refuse_connections(runtime, database_url, role, limit=0)

    status = await client.get("/api/status", headers=admin_auth())
    assert status.status_code == 503
    body = status.json()
    assert body["status"] == "warning"
    assert [(message["severity"], message["code"]) for message in body["messages"]] == [
        ("warning", "too_many_connections")
    ]
    assert "dynos x processes x DATABASE_MAX_CONNECTIONS (20)" in body["messages"][0]["message"]
    batch = {"batch": [{"type": "identify", "userId": "refused-1", "messageId": "refused-1"}]}
    refused = await client.post("/v1/batch", headers=basic_auth(), json=batch)
    assert refused.status_code == 503

    await refuse_connections(runtime, database_url, role, limit=-1)
    assert (await client.get("/api/status", headers=admin_auth())).status_code == 200
    retried = {"batch": [{"type": "identify", "userId": "refused-1", "messageId": "retried-1"}]}
    assert (await client.post("/v1/batch", headers=basic_auth(), json=retried)).status_code == 200
    connection = await asyncpg.connect(make_url(database_url).set(drivername="postgresql").render_as_string(False))
    try:
        stored = await connection.fetch("SELECT message_id FROM inbound_journal")
    finally:
        await connection.close()
    assert [row["message_id"] for row in stored] == ["retried-1"]


@pytest.mark.browser
async def test_signing_in_while_postgresql_refuses_connections_shows_why_on_the_dashboard(database_url, role):
    if not CHROMIUM.exists():
        chromium_missing(in_ci())
    url = make_url(database_url).set(username=role).render_as_string(hide_password=False)
    with LiveServer(make_env(url)) as server:
        # The server's pooled connections were let in before the limit: end them, so it must open new ones.
        await _admin(
            database_url,
            f'ALTER ROLE "{role}" CONNECTION LIMIT 0',
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
        )
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            try:
                page = await browser.new_page()
                await page.goto(f"{server.url}/")
                await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
                await page.get_by_role("button", name="Sign in").click()
                await expect(page.get_by_text("PostgreSQL refuses new connections (too many clients)")).to_be_visible()
                await expect(page.get_by_text("DATABASE_MAX_CONNECTIONS (20)")).to_be_visible()
            finally:
                await browser.close()
