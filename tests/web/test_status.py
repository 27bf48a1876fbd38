"""GET /api/status: each condition docs/operations.md lists brought about, seen, and cleared.

Times are moved by writing the rows a stalled process would have left (a heartbeat 61 s
old, a message received 6 minutes ago), never by reading the module's thresholds.
"""

import asyncio
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from connector.core.db import create_engine
from connector.core.models import DeadLetter, JournalEntry, WorkerHeartbeat, utcnow
from connector.flow.journal import retry_failed
from connector.processing import apply
from connector.service import worker
from connector.service.heartbeat import beat
from tests.support.app import admin_auth, basic_auth, drain
from tests.support.database import post_with_poison
from tests.support.fake_segment import configure, send_all

journal = JournalEntry.__table__
dead_letters = DeadLetter.__table__
heartbeats = WorkerHeartbeat.__table__


async def status(client, expected_code: int = 200) -> dict[str, Any]:
    response = await client.get("/api/status", headers=admin_auth())
    assert response.status_code == expected_code, response.text
    return response.json()


async def codes(client) -> dict[str, str]:
    return {message["code"]: message["severity"] for message in (await status(client))["messages"]}


@pytest.fixture
async def live_worker(runtime):
    """A heartbeat as a running worker leaves it, so only the condition under test shows."""
    await beat(runtime.engine, "worker.1:42", utcnow())


async def set_time(runtime, table, column, when, where=None) -> None:
    statement = table.update().values({column: when})
    async with runtime.engine.begin() as conn:
        await conn.execute(statement if where is None else statement.where(where))


async def test_a_fresh_install_with_a_worker_says_ok_with_no_messages(client, live_worker):
    body = await status(client)
    assert body["status"] == "ok" and body["messages"] == []
    assert body["workers"]["alive"] == 1


async def test_no_worker_is_an_error_until_a_worker_beats_and_again_once_it_stopped(client, runtime):
    body = await status(client)
    assert body["status"] == "error" and (await codes(client)) == {"no_worker": "error"}
    assert "connector worker" in body["messages"][0]["message"]

    stop = asyncio.Event()
    task = asyncio.create_task(worker.run_forever(runtime, stop))
    try:

        async def beaten() -> bool:
            return "no_worker" not in await codes(client)

        for _ in range(200):
            if await beaten():
                break
            await asyncio.sleep(0.05)
        assert (await status(client))["status"] == "ok"
    finally:
        stop.set()
        await task
    assert (await codes(client)) == {"no_worker": "error"}  # a clean stop removes its heartbeat


async def test_a_heartbeat_older_than_sixty_seconds_counts_as_no_worker(client, runtime, live_worker):
    await set_time(runtime, heartbeats, "beat_at", utcnow() - timedelta(seconds=50))
    assert "no_worker" not in await codes(client)
    await set_time(runtime, heartbeats, "beat_at", utcnow() - timedelta(seconds=61))
    assert (await codes(client)) == {"no_worker": "error"}
    assert (await status(client))["workers"]["alive"] == 0


async def test_segments_chosen_without_a_write_key_warn_until_a_key_is_set(client, runtime, live_worker):
    await runtime.settings.save({"synchronized_segments": ["ALL"]})
    body = await status(client)
    assert body["status"] == "warning" and (await codes(client)) == {"no_write_key": "warning"}
    await runtime.settings.save({"write_key": "a-write-key"})
    assert (await status(client))["status"] == "ok"


async def test_events_chosen_without_a_write_key_warn_too(client, runtime, live_worker):
    await runtime.settings.save({"send_events": ["Order Completed"]})
    assert (await codes(client)) == {"no_write_key": "warning"}


async def test_a_write_key_with_nothing_chosen_to_send_warns_until_something_is(client, runtime, live_worker):
    await runtime.settings.save({"write_key": "a-write-key"})
    assert (await codes(client)) == {"nothing_to_send": "warning"}
    await runtime.settings.save({"synchronized_account_segments": ["ALL"]})
    assert (await codes(client)) == {}


async def test_a_write_key_segment_rejects_warns_until_segment_accepts_it(client, runtime, segment_api, live_worker):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await runtime.settings.save({"write_key": "not-the-write-key"})
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1", "traits": {"email": "a@b.co"}})
    await drain(runtime)
    await send_all(runtime, rounds=1)
    body = await status(client)
    assert body["status"] == "warning" and "write_key_rejected" in await codes(client)
    assert body["segment_api"]["status_code"] == 401
    rejected = next(m for m in body["messages"] if m["code"] == "write_key_rejected")
    assert "HTTP 401" in rejected["message"] and "not-the-write-key" not in str(body)

    await runtime.settings.save({"write_key": segment_api.write_key})
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u2"})
    await drain(runtime)
    await send_all(runtime)
    body = await status(client)
    assert "write_key_rejected" not in await codes(client) and body["segment_api"]["status_code"] == 200


async def test_a_key_rejected_with_403_warns_the_same_way(client, runtime, segment_api, live_worker):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    segment_api.fail(403, count=1)
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
    await drain(runtime)
    await send_all(runtime, rounds=1)
    assert "write_key_rejected" in await codes(client)
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u2"})  # Segment takes the key again
    await drain(runtime)
    await send_all(runtime)
    assert "write_key_rejected" not in await codes(client)


async def test_failing_deliveries_warn_until_they_go_through(client, runtime, segment_api, live_worker):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    segment_api.fail(500, count=1)
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
    await drain(runtime)
    await send_all(runtime, rounds=1)
    body = await status(client)
    assert (await codes(client)) == {"deliveries_failing": "warning"}
    assert body["outbox"] == {"depth": 1, "failing": 1}
    async with runtime.engine.begin() as conn:  # the backoff has passed
        await conn.execute(sa.text("UPDATE outbox SET available_at = :now"), {"now": utcnow().replace(tzinfo=None)})
    await send_all(runtime)
    assert (await codes(client)) == {} and (await status(client))["outbox"] == {"depth": 0, "failing": 0}


async def test_dead_letters_warn_for_an_hour(client, runtime, segment_api, live_worker):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    segment_api.fail(400, count=1)
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
    await drain(runtime)
    await send_all(runtime)
    assert (await codes(client)) == {"dead_letters": "warning"}
    assert (await status(client))["dead_letters_last_hour"] == 1
    await set_time(runtime, dead_letters, "created_at", utcnow() - timedelta(minutes=59))
    assert "dead_letters" in await codes(client)
    await set_time(runtime, dead_letters, "created_at", utcnow() - timedelta(minutes=61))
    assert (await codes(client)) == {}


async def test_a_replayed_dead_letter_no_longer_warns(client, runtime, segment_api, live_worker):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    segment_api.fail(400, count=1)
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
    await drain(runtime)
    await send_all(runtime)
    warning = next(m for m in (await status(client))["messages"] if m["code"] == "dead_letters")
    assert warning["link"] == "#/deliveries"

    replayed = await client.post("/api/dead-letters/replay", headers=admin_auth(), json={})
    assert replayed.json() == {"replayed": 1, "failed": 0}
    assert (await codes(client)) == {} and (await status(client))["dead_letters_last_hour"] == 0


async def test_outgoing_messages_waiting_without_a_write_key_warn_on_a_fresh_install(client, runtime, live_worker):
    for user in ("u1", "u2"):
        await client.post("/v1/identify", headers=basic_auth(), json={"userId": user, "traits": {"plan": "pro"}})
    await drain(runtime)
    body = await status(client)
    assert body["status"] == "warning" and body["outbox"]["depth"] == 2
    assert body["messages"] == [
        {
            "severity": "warning",
            "code": "no_write_key",
            "message": "2 outgoing messages wait in the outbox but no write key is set: "
            "nothing is sent to Segment until you set one",
            "link": "#/settings",
        }
    ]


async def test_group_calls_ignored_while_handle_group_calls_is_off_are_a_warning_and_counted_skipped(
    client, runtime, live_worker
):
    for group in ("g-1", "g-2"):
        answer = await client.post("/v1/group", headers=basic_auth(), json={"userId": "u1", "groupId": group})
        assert answer.status_code == 200
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
    await runtime.settings.save({"write_key": "a-write-key", "synchronized_segments": ["ALL"]})
    await drain(runtime)
    body = await status(client)
    assert body["journal"] == {"pending": 0, "processed": 1, "failed": 0, "skipped": 2}
    assert [m for m in body["messages"] if m["code"] == "groups_ignored"] == [
        {
            "severity": "warning",
            "code": "groups_ignored",
            "message": "2 group calls ignored: Handle group calls is off",
            "link": "#/settings",
        }
    ]
    overview = (await client.get("/api/overview", headers=admin_auth())).json()
    assert sum(overview["incoming"]["group.skipped"]) == 2 and "group.processed" not in overview["incoming"]

    await runtime.settings.save({"handle_accounts": True})  # the calls skipped before are history now
    assert "groups_ignored" not in await codes(client)


async def test_a_journal_waiting_more_than_five_minutes_warns_until_processed(client, runtime, live_worker):
    await client.post("/v1/track", headers=basic_auth(), json={"userId": "u1", "event": "Signed Up"})
    await set_time(runtime, journal, "received_at", utcnow() - timedelta(minutes=4, seconds=50))
    assert (await codes(client)) == {}
    await set_time(runtime, journal, "received_at", utcnow() - timedelta(minutes=6))
    body = await status(client)
    assert (await codes(client)) == {"journal_lag": "warning"} and body["journal"] == {
        "pending": 1,
        "processed": 0,
        "failed": 0,
        "skipped": 0,
    }
    await drain(runtime)
    assert "journal_lag" not in await codes(client)


async def test_messages_failed_in_processing_warn_until_retried(client, runtime, live_worker, monkeypatch):
    event_properties = apply.event_properties

    def failing(message):
        if message["messageId"] == "poison":
            raise RuntimeError("cannot store poison")
        return event_properties(message)

    monkeypatch.setattr(apply, "event_properties", failing)
    await client.post("/v1/track", headers=basic_auth(), json={"userId": "u1", "event": "A", "messageId": "poison"})
    await drain(runtime)
    found = (await status(client))["messages"]
    assert [m["code"] for m in found] == ["processing_failed"] and found[0]["message"].startswith(
        "1 message failed in processing"
    )
    monkeypatch.undo()
    await retry_failed(runtime.engine)
    await drain(runtime)
    assert "processing_failed" not in await codes(client)


async def test_a_message_failed_in_processing_is_counted_as_failed_not_as_processed(client, runtime, monkeypatch):
    await post_with_poison(client, monkeypatch)
    await drain(runtime)
    assert (await status(client))["journal"] == {"pending": 0, "processed": 2, "failed": 1, "skipped": 0}


async def test_several_conditions_are_all_listed_and_the_worst_wins(client, runtime):
    await runtime.settings.save({"synchronized_segments": ["ALL"]})
    body = await status(client)
    assert body["status"] == "error"
    assert {m["code"]: m["severity"] for m in body["messages"]} == {"no_worker": "error", "no_write_key": "warning"}


async def test_an_unreachable_database_is_an_error_with_503(client, runtime, live_worker):
    engine = runtime.engine
    runtime.engine = create_engine("postgresql+asyncpg://postgres@127.0.0.1:9/nowhere")
    try:
        body = await status(client, expected_code=503)
        assert body["status"] == "error"
        assert [(m["severity"], m["code"]) for m in body["messages"]] == [("error", "database_unreachable")]
    finally:
        await runtime.engine.dispose()
        runtime.engine = engine
    assert (await status(client))["status"] == "ok"
