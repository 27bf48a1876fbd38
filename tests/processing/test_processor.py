"""The journal consumer: a bad message fails alone and can be retried; the worker stops cleanly."""

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner
from sqlmodel import col

from connector import cli
from connector.core.environment import get_environment
from connector.core.models import Account, Event, JournalEntry
from connector.flow.journal import retry_failed
from connector.service.batch import process_batch
from tests.support.app import ADMIN_TOKEN, API_KEY, basic_auth, drain, wait_until
from tests.support.database import fail_for, journal_statuses, post_with_poison
from tests.support.inbound_cases import find_user, user_profile

journal = JournalEntry.__table__
accounts = Account.__table__
CONNECTOR = Path(sys.executable).with_name("connector")


async def journal_status(runtime) -> dict[str, tuple[str, str | None]]:
    return {row.message_id: (row.status, row.error) for row in await journal_statuses(runtime.engine)}


async def test_a_failing_message_is_marked_and_does_not_hold_up_the_rest(client, runtime, monkeypatch):
    await post_with_poison(client, monkeypatch)
    changes = await drain(runtime)
    assert (changes.processed, changes.failed) == (2, 1)
    status = await journal_status(runtime)
    assert status["before"] == ("processed", None) and status["after"] == ("processed", None)
    assert status["poison"][0] == "failed"
    assert status["poison"][1] == "RuntimeError: cannot store poison"
    assert await find_user(client, user_id="u3") is not None
    assert await find_user(client, user_id="u2") is None  # the failed message left nothing half-done

    # Later messages keep flowing past the failed one.
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u4", "messageId": "later"})
    await drain(runtime)
    assert (await journal_status(runtime))["later"][0] == "processed"

    monkeypatch.undo()  # the fix is deployed
    assert await retry_failed(runtime.engine) == 1
    assert (await journal_status(runtime))["poison"] == ("pending", None)
    assert (await drain(runtime)).processed == 1
    assert (await journal_status(runtime))["poison"][0] == "processed"
    profile = await user_profile(client, user_id="u2")
    assert [event["message_id"] for event in profile["recent_events"]] == ["poison"]


async def test_journal_retry_failed_command(client, runtime, monkeypatch):
    fail_for(monkeypatch, "poison")
    await client.post("/v1/track", headers=basic_auth(), json={"userId": "u1", "event": "E", "messageId": "poison"})
    await drain(runtime)
    monkeypatch.undo()
    monkeypatch.setenv("DATABASE_URL", runtime.env.database_url)
    get_environment.cache_clear()
    try:
        # The command runs its own event loop: give it a thread of its own.
        result = await asyncio.to_thread(CliRunner().invoke, cli.main, ["journal", "retry-failed"])
    finally:
        get_environment.cache_clear()
    assert result.exit_code == 0, result.output
    assert "1 failed messages queued again" in result.output
    await drain(runtime)
    assert (await journal_status(runtime))["poison"][0] == "processed"


async def test_worker_process_stops_cleanly_on_sigterm(client, runtime):
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "from-worker", "traits": {"a": 1}})
    env = {
        **os.environ,
        "DATABASE_URL": runtime.env.database_url,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "CONNECTOR_API_KEY": API_KEY,
        "LOG_LEVEL": "INFO",
        "CONNECTOR_ENV": "development",
    }
    worker = await asyncio.create_subprocess_exec(
        str(CONNECTOR), "worker", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        # The worker is up and working once the journal message has become a profile.
        await wait_until(lambda: find_user(client, user_id="from-worker"), timeout=30)
        worker.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(worker.communicate(), timeout=20)
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    text = output.decode()
    assert worker.returncode == 0, text
    assert '"worker.start"' in text and '"worker.stop"' in text, text
    assert "Traceback" not in text


async def test_a_repeated_value_keeps_its_newer_time_so_a_late_older_message_does_not_win(client, runtime):
    """A newer message that repeats a stored value moves the value's time: an older message arriving after
    it must not win, for user traits and account traits alike, whichever batches they fall in."""
    await runtime.settings.save({"handle_accounts": True})

    async def send(timestamp, plan):
        for body in (
            {"userId": "ada", "type": "identify", "traits": {"plan": plan}},
            {"userId": "ada", "type": "group", "groupId": "acme", "traits": {"plan": plan}},
        ):
            response = await client.post(
                f"/v1/{body['type']}", headers=basic_auth(), json={**body, "timestamp": timestamp}
            )
            assert response.status_code == 200, response.text
        await drain(runtime)  # each call in batches of its own

    await send("2024-01-01T00:00:00Z", "pro")
    await send("2024-03-01T00:00:00Z", "pro")  # the same value, newer
    await send("2024-02-01T00:00:00Z", "free")  # late, and older than the second
    async with runtime.engine.connect() as conn:
        account = (await conn.execute(sa.select(accounts.c.traits).where(accounts.c.group_id == "acme"))).scalar_one()
    assert (await user_profile(client, user_id="ada"))["traits"]["plan"] == "pro"
    assert account["plan"] == "pro"


async def test_an_event_stores_its_message_s_properties_and_context_and_a_page_s_name_and_category(client, runtime):
    """The events as the profile API, segments and the sender read them: a track keeps its properties and context
    as sent; a page or screen adds its name and category to its properties unless they hold their own; a
    message without properties stores an empty object."""
    await runtime.settings.save({"handle_pages": True, "handle_screens": True})
    context = {"ip": "203.0.113.9", "page": {"path": "/pricing"}, "traits": {"email": "ada@example.com"}}
    sent: list[dict[str, Any]] = [
        {"type": "track", "event": "Signed In", "messageId": "t", "properties": {"plan": "pro", "n": [1, {"a": None}]}},
        {"type": "track", "event": "Bare", "messageId": "bare"},
        {"type": "page", "name": "Pricing", "category": "Docs", "messageId": "p", "properties": {"path": "/pricing"}},
        {"type": "screen", "name": "Home", "category": "App", "messageId": "s", "properties": {"name": "Own"}},
    ]
    for body in sent:
        response = await client.post(
            f"/v1/{body['type']}", headers=basic_auth(), json={**body, "userId": "ada", "context": context}
        )
        assert response.status_code == 200, response.text
    await drain(runtime)
    async with runtime.engine.connect() as conn:
        stored = {
            row.message_id: (row.properties, row.context)
            for row in await conn.execute(sa.select(col(Event.message_id), col(Event.properties), col(Event.context)))
        }
    assert {message_id: properties for message_id, (properties, _) in stored.items()} == {
        "t": {"plan": "pro", "n": [1, {"a": None}]},
        "bare": {},
        "p": {"path": "/pricing", "name": "Pricing", "category": "Docs"},
        "s": {"name": "Own", "category": "App"},
    }
    assert all(stored_context == context for _, stored_context in stored.values())


async def test_a_message_sent_again_after_it_was_processed_is_not_queued_or_applied_again(client, runtime):
    track = {"type": "track", "userId": "u1", "event": "Order Completed", "messageId": "once"}
    assert (await client.post("/v1/track", headers=basic_auth(), json=track)).status_code == 200
    assert (await drain(runtime)).processed == 1
    again = [track, {**track, "messageId": "new"}]  # a retried batch: one message already stored, one new
    assert (await client.post("/v1/batch", headers=basic_auth(), json={"batch": again})).status_code == 200

    assert [(row.message_id, row.status) for row in await journal_statuses(runtime.engine)] == [
        ("once", "processed"),
        ("new", "pending"),
    ]
    assert (await drain(runtime)).processed == 1
    async with runtime.engine.connect() as conn:
        stored = (await conn.execute(sa.select(col(Event.message_id)).order_by(col(Event.id)))).scalars().all()
    assert stored == ["once", "new"]


async def test_a_batch_takes_the_oldest_pending_messages_first(client, runtime):
    # One person's messages: one partition on PostgreSQL, so journal order decides there as it does on SQLite.
    batch = [{"type": "track", "userId": "u1", "event": "E", "messageId": f"m-{n}"} for n in (1, 2, 3)]
    assert (await client.post("/v1/batch", headers=basic_auth(), json={"batch": batch})).status_code == 200

    changes = await process_batch(runtime.engine, await runtime.settings.current(), limit=2)

    assert changes.processed == 2
    assert [(row.message_id, row.status) for row in await journal_statuses(runtime.engine)] == [
        ("m-1", "processed"),
        ("m-2", "processed"),
        ("m-3", "pending"),
    ]
