"""The Segment-compatible endpoints: POST /v1/<type>, /v1/batch and /v1/import."""

import gzip
import json
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from sqlmodel import col

from connector.core.db import create_engine
from connector.core.models import Event, JournalEntry
from connector.core.spec import MAX_BATCH_MESSAGES, parse_timestamp
from connector.inbound.writer import open_journal
from tests.support.app import admin_auth, basic_auth, drain, free_port
from tests.support.database import stored_counts
from tests.support.inbound_cases import assert_journey_stored, enable_accounts, journey

journal = JournalEntry.__table__


async def journal_payloads(runtime) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        return [row.payload for row in await conn.execute(sa.select(journal.c.payload).order_by(journal.c.id))]


async def assert_refused(client, runtime, response, status: int, field: str | None = None) -> None:
    """Refused with `status` naming `field`; nothing stored; and the service still takes messages."""
    assert response.status_code == status, response.text
    if field is not None:
        assert response.json()["field"] == field, response.json()
    assert "message" in response.json()
    assert set((await stored_counts(runtime)).values()) == {0}
    after = await client.post("/v1/identify", headers=basic_auth(), json={"userId": "after", "traits": {"a": 1}})
    assert after.status_code == 200, after.text


async def test_every_call_type_through_single_endpoints(client, runtime):
    await enable_accounts(client)
    for message in journey("ada"):
        message_type = message.pop("type")  # the path gives the type
        response = await client.post(f"/v1/{message_type}", headers=basic_auth(), json=message)
        assert response.status_code == 200, (message_type, response.text)
        assert response.json()["accepted"] == 1
    await drain(runtime)
    await assert_journey_stored(client, "ada", "api")


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/import"])
async def test_every_call_type_through_batch_endpoints(client, runtime, path):
    await enable_accounts(client)
    response = await client.post(path, headers=basic_auth(), json={"batch": journey("bob") + journey("cy")})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 14, "skipped": 0}
    await drain(runtime)
    await assert_journey_stored(client, "bob", "api")
    await assert_journey_stored(client, "cy", "api")


async def test_batch_context_and_integrations_apply_to_each_message(client, runtime):
    batch = {
        "context": {"library": {"name": "analytics-node"}, "ip": "10.0.0.1"},
        "integrations": {"Amplitude": False},
        "batch": [
            {"type": "track", "userId": "u1", "event": "A", "messageId": "m-a"},
            {
                "type": "track",
                "userId": "u1",
                "event": "B",
                "messageId": "m-b",
                "context": {"ip": "10.0.0.2"},
                "integrations": {"Amplitude": True},
            },
        ],
    }
    assert (await client.post("/v1/batch", headers=basic_auth(), json=batch)).status_code == 200
    payloads = {payload["messageId"]: payload for payload in await journal_payloads(runtime)}
    assert payloads["m-a"]["context"] == {"library": {"name": "analytics-node"}, "ip": "10.0.0.1"}
    assert payloads["m-b"]["context"] == {"library": {"name": "analytics-node"}, "ip": "10.0.0.2"}
    assert payloads["m-a"]["integrations"] == {"Amplitude": False}
    assert payloads["m-b"]["integrations"] == {"Amplitude": True}
    await drain(runtime)
    async with runtime.engine.connect() as conn:
        stored = {
            row[0]: row[1:]
            for row in await conn.execute(sa.select(col(Event.message_id), col(Event.context), col(Event.integrations)))
        }
    # The event keeps its sender's routing beside its context, for the sender to forward it with
    assert stored["m-a"] == ({"library": {"name": "analytics-node"}, "ip": "10.0.0.1"}, {"Amplitude": False})
    assert stored["m-b"] == ({"library": {"name": "analytics-node"}, "ip": "10.0.0.2"}, {"Amplitude": True})


async def test_batch_level_loop_guard_drops_every_message(client, runtime):
    batch = {
        "integrations": {"Webhooks": False},
        "batch": [{"type": "identify", "userId": "u1"}, {"type": "track", "userId": "u1", "event": "E"}],
    }
    response = await client.post("/v1/batch", headers=basic_auth(), json=batch)
    assert response.json() == {"success": True, "accepted": 0, "skipped": 2}
    assert await journal_payloads(runtime) == []


async def test_snake_case_keys_are_accepted(client, runtime):
    await enable_accounts(client)
    messages = [
        ("identify", {"user_id": "snake", "anonymous_id": "snake-anon", "message_id": "m-1", "traits": {"a": 1}}),
        ("track", {"anonymous_id": "snake-old", "event": "Visited", "message_id": "m-2"}),
        ("group", {"user_id": "snake", "group_id": "g-snake", "traits": {"name": "S"}}),
        ("alias", {"user_id": "snake", "previous_id": "snake-old"}),
    ]
    for message_type, message in messages:
        response = await client.post(f"/v1/{message_type}", headers=basic_auth(), json=message)
        assert response.status_code == 200, response.text
    await drain(runtime)
    profile = (await client.get("/api/users", params={"user_id": "snake"}, headers=admin_auth())).json()
    assert profile["traits"] == {"a": 1}
    assert set(profile["identifiers"]["anonymous_id"]) == {"snake-anon", "snake-old"}
    assert profile["account"]["group_id"] == "g-snake"
    assert [e["message_id"] for e in profile["recent_events"]] == ["m-2"]


async def test_gzip_body_is_accepted(client, runtime):
    body = gzip.compress(orjson.dumps({"batch": [{"type": "identify", "userId": "gz", "traits": {"x": "y"}}]}))
    response = await client.post(
        "/v1/batch",
        content=body,
        headers={**basic_auth(), "Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    await drain(runtime)
    profile = (await client.get("/api/users", params={"user_id": "gz"}, headers=admin_auth())).json()
    assert profile["traits"] == {"x": "y"}


async def test_gzip_bomb_is_refused(client, runtime):
    # Small on the wire, far over the decompressed cap once inflated.
    padding = " " * (runtime.env.max_decompressed_bytes + 1000)
    body = gzip.compress(b'{"batch": [{"type": "identify", "userId": "bomb"}]' + padding.encode() + b"}")
    assert len(body) < 50_000
    response = await client.post("/v1/batch", content=body, headers={**basic_auth(), "Content-Encoding": "gzip"})
    await assert_refused(client, runtime, response, 413)
    assert response.json()["limit"] == runtime.env.max_decompressed_bytes


async def test_invalid_gzip_is_refused(client, runtime):
    response = await client.post(
        "/v1/track", content=b"not gzip at all", headers={**basic_auth(), "Content-Encoding": "gzip"}
    )
    await assert_refused(client, runtime, response, 400, "body")


@pytest.mark.parametrize("path", ["/v1/track", "/v1/batch"])
async def test_write_key_in_body_replaces_basic_auth(client, runtime, path):
    message = {"type": "track", "userId": "wk", "event": "E"}
    body = {"batch": [message]} if path == "/v1/batch" else dict(message)
    wrong = await client.post(path, json={**body, "writeKey": "nope"})
    await assert_refused(client, runtime, wrong, 401)
    response = await client.post(path, json={**body, "writeKey": runtime.api_key})
    assert response.status_code == 200, response.text
    payload = [p for p in await journal_payloads(runtime) if p.get("userId") == "wk"]
    assert len(payload) == 1 and "writeKey" not in payload[0]


@pytest.mark.parametrize(
    "headers",
    [{}, basic_auth("wrong-key"), {"Authorization": "Bearer test-api-key-0123456789"}],
    ids=["missing", "wrong", "not-basic"],
)
async def test_bad_key_is_401(client, runtime, headers):
    response = await client.post("/v1/identify", headers=headers, json={"userId": "u1"})
    await assert_refused(client, runtime, response, 401)
    assert response.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/identify", {"traits": {"a": 1}}, "userId"),
        ("/v1/identify", {"userId": "undefined"}, "userId"),
        ("/v1/identify", {"userId": "null", "anonymousId": "[object Object]"}, "userId"),
        ("/v1/identify", {"userId": {"id": 1}}, "userId"),
        ("/v1/track", {"userId": "u1"}, "event"),
        ("/v1/track", {"userId": "u1", "event": "   "}, "event"),
        ("/v1/group", {"userId": "u1", "traits": {"name": "x"}}, "groupId"),
        ("/v1/group", {"userId": "u1", "groupId": "undefined"}, "groupId"),
        ("/v1/alias", {"userId": "u1"}, "previousId"),
        ("/v1/alias", {"previousId": "p1", "anonymousId": "a1"}, "userId"),
        ("/v1/identify", {"userId": "u1", "traits": ["not", "an", "object"]}, "traits"),
        ("/v1/track", {"userId": "u1", "event": "E", "timestamp": "yesterday"}, "timestamp"),
        ("/v1/track", {"type": "identify", "userId": "u1", "event": "E"}, "type"),
        ("/v1/track", {"userId": "u1", "event": "E", "timestamp": 10**17}, "timestamp"),
        (
            "/v1/track",
            {
                "userId": "u1",
                "event": "E",
                "originalTimestamp": "0001-01-01T00:00:00Z",
                "sentAt": "9999-01-01T00:00:00Z",
            },
            "sentAt",
        ),
        # PostgreSQL cannot store U+0000 in JSON: refused up front rather than a 503 that Segment retries forever.
        ("/v1/track", {"userId": "u1", "event": "E", "properties": {"note": "a\u0000b"}}, "properties"),
    ],
)
async def test_spec_violation_is_400_naming_the_field(client, runtime, path, body, field):
    response = await client.post(path, headers=basic_auth(), json=body)
    await assert_refused(client, runtime, response, 400, field)


async def test_malformed_json_is_400(client, runtime):
    response = await client.post("/v1/identify", headers=basic_auth(), content=b'{"userId": "u1",')
    await assert_refused(client, runtime, response, 400, "body")
    assert "malformed JSON" in response.json()["message"]


async def test_json_nested_deeper_than_the_cap_is_400(client, runtime):
    depth = runtime.env.max_json_depth
    nested: dict[str, Any] = {}
    for _ in range(depth):
        nested = {"n": nested}
    response = await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1", "traits": nested})
    await assert_refused(client, runtime, response, 400, "body")
    assert "nested" in response.json()["message"]


async def test_message_over_32_kb_is_413(client, runtime):
    body = {"userId": "u1", "event": "Big", "properties": {"blob": "x" * 33_000}}
    response = await client.post("/v1/track", headers=basic_auth(), json=body)
    await assert_refused(client, runtime, response, 413)
    assert "32 KB" in response.json()["message"]


async def test_batch_body_over_500_kb_is_413(client, runtime):
    messages = [{"type": "track", "userId": "u1", "event": "E", "properties": {"blob": "x" * 20_000}}] * 26
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": messages})
    await assert_refused(client, runtime, response, 413)
    assert response.json()["limit"] == 500 * 1024


async def test_a_gzipped_batch_that_expands_past_500_kb_is_413_however_small_on_the_wire(client, runtime):
    # 30 messages of 20 KB: every one within 32 KB, 600 KB together once inflated (under the 2 MB gzip cap).
    messages = [
        {"type": "track", "userId": "u1", "event": "E", "messageId": f"m-{n}", "properties": {"blob": "x" * 20_000}}
        for n in range(30)
    ]
    inflated = orjson.dumps({"batch": messages})
    assert 600_000 < len(inflated) < 610_000
    body = gzip.compress(inflated)
    assert len(body) < 10_000
    response = await client.post("/v1/batch", content=body, headers={**basic_auth(), "Content-Encoding": "gzip"})
    await assert_refused(client, runtime, response, 413)
    assert response.json()["limit"] == 500 * 1024


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track"])
@pytest.mark.parametrize("size", [32_768, 32_769])
async def test_a_message_of_exactly_32_kb_is_accepted_and_one_byte_more_is_413(client, runtime, path, size):
    """Segment's limit is 32 KB a message: 32,768 bytes. The connector measures a message once parsed, written
    again as compact JSON (no spaces, keys in their order, non-ASCII as UTF-8), not as the bytes received; it is
    posted here in exactly that form (alone, or within {"batch":[...]}), so both measures agree."""
    message: dict[str, Any] = {
        "type": "track",
        "userId": "u1",
        "event": "Big",
        "messageId": "big",
        "properties": {"blob": ""},
    }
    without_blob = len(json.dumps(message, separators=(",", ":")).encode())
    message["properties"]["blob"] = "x" * (size - without_blob)
    encoded = json.dumps(message, separators=(",", ":")).encode()
    assert len(encoded) == size
    body = b'{"batch":[' + encoded + b"]}" if path == "/v1/batch" else encoded
    response = await client.post(path, content=body, headers={**basic_auth(), "Content-Type": "application/json"})
    if size == 32_768:
        assert response.status_code == 200, response.text
        assert response.json()["accepted"] == 1 and "rejected" not in response.json()
        assert [payload["messageId"] for payload in await journal_payloads(runtime)] == ["big"]
    elif path == "/v1/batch":
        assert response.status_code == 400, response.text
        assert [(r["index"], r["field"], r["status"]) for r in response.json()["rejected"]] == [(0, "body", 413)]
        assert await journal_payloads(runtime) == []
    else:
        await assert_refused(client, runtime, response, 413)


async def test_batch_of_more_than_2500_messages_is_400(client, runtime):
    messages = [{"type": "track", "userId": "u", "event": "E"}] * (MAX_BATCH_MESSAGES + 1)
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": messages})
    await assert_refused(client, runtime, response, 400, "batch")
    assert response.json()["limit"] == MAX_BATCH_MESSAGES


async def test_batch_keeps_valid_messages_and_lists_rejected_ones(client, runtime):
    batch = [
        {"type": "identify", "userId": "ok-1", "messageId": "ok-1"},
        {"type": "track", "userId": "u1"},
        {"type": "track", "userId": "ok-2", "event": "E", "messageId": "ok-2"},
        {"type": "unknown", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "Big", "properties": {"blob": "x" * 33_000}},
        "not an object",
        {"type": "identify", "userId": "u1", "traits": {"name\u0000": "x"}},
    ]
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 2
    assert [(r["index"], r["field"], r["status"]) for r in body["rejected"]] == [
        (1, "event", 400),
        (3, "type", 501),
        (4, "body", 413),
        (5, "body", 400),
        (6, "traits", 400),
    ]
    assert [p["messageId"] for p in await journal_payloads(runtime)] == ["ok-1", "ok-2"]


async def test_storage_unavailable_is_503_and_nothing_is_acknowledged(app, client, runtime):
    dead = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone", pool_pre_ping=False)
    live, journal = runtime.engine, app.state.journal
    # The journal writer of a database that is away (on SQLite too: the web process's writer holds its own
    # connection to the file, which an outage test cannot take away; tests/inbound/test_sqlite_writer.py).
    app.state.journal, runtime.settings.engine = open_journal(dead), dead
    runtime.settings._loaded_at = 0.0  # the settings cache has expired too: a full outage
    try:
        response = await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
        assert response.status_code == 503, response.text
        assert "retry" in response.json()["message"]
        batch = await client.post(
            "/v1/batch", headers=basic_auth(), json={"batch": [{"type": "identify", "userId": "u1"}]}
        )
        assert batch.status_code == 503, batch.text
    finally:
        app.state.journal, runtime.settings.engine = journal, live
        await dead.dispose()
    assert set((await stored_counts(runtime)).values()) == {0}
    # Segment retries 5xx: the same call succeeds once storage is back.
    response = await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1"})
    assert response.status_code == 200, response.text


async def test_same_message_id_is_stored_once(client, runtime):
    message = {"userId": "u1", "event": "Order Completed", "messageId": "dup-1"}
    for _ in range(2):
        assert (await client.post("/v1/track", headers=basic_auth(), json=message)).status_code == 200
    await client.post("/v1/batch", headers=basic_auth(), json={"batch": [{**message, "type": "track"}]})
    await drain(runtime)
    counts = await stored_counts(runtime)
    assert counts["inbound_journal"] == 1 and counts["events"] == 1


async def test_message_without_id_gets_a_deterministic_one(client, runtime):
    message = {
        "userId": "u1",
        "event": "Clicked",
        "originalTimestamp": "2024-05-01T10:00:00Z",
        "sentAt": "2024-05-01T10:00:01Z",
    }
    for _ in range(2):
        assert (await client.post("/v1/track", headers=basic_auth(), json=message)).status_code == 200
    other = await client.post("/v1/track", headers=basic_auth(), json={**message, "event": "Other"})
    assert other.status_code == 200
    ids = [payload["messageId"] for payload in await journal_payloads(runtime)]
    assert len(ids) == 2 and len(set(ids)) == 2
    await drain(runtime)
    assert (await stored_counts(runtime))["events"] == 2


async def test_two_identical_undated_calls_without_message_id_are_both_stored(client, runtime):
    daily_job = {"type": "track", "userId": "e1", "event": "Daily Login"}
    for _ in range(2):
        assert (await client.post("/v1/track", headers=basic_auth(), json=daily_job)).status_code == 200
        assert (await client.post("/segment", headers=basic_auth(), json=daily_job)).status_code == 200
    await drain(runtime)
    assert (await stored_counts(runtime))["events"] == 4


async def test_clock_skew_is_corrected_from_sent_at(client, runtime):
    # The device clock is 1 hour fast: the event happened 5 s before it was sent.
    message = {
        "userId": "u1",
        "event": "E",
        "originalTimestamp": "2030-01-01T13:00:00Z",
        "sentAt": "2030-01-01T13:00:05Z",
    }
    assert (await client.post("/v1/track", headers=basic_auth(), json=message)).status_code == 200
    batch = {
        "sentAt": "2030-01-01T13:00:05Z",
        "batch": [{"type": "track", "userId": "u1", "event": "F", "originalTimestamp": "2030-01-01T13:00:00Z"}],
    }
    assert (await client.post("/v1/batch", headers=basic_auth(), json=batch)).status_code == 200
    own = {"userId": "u1", "event": "G", "timestamp": "2020-01-01T00:00:00Z", "sentAt": "2030-01-01T13:00:05Z"}
    assert (await client.post("/v1/track", headers=basic_auth(), json=own)).status_code == 200
    payloads = {payload["event"]: payload for payload in await journal_payloads(runtime)}
    for name in ("E", "F"):
        received = parse_timestamp(payloads[name]["receivedAt"], "receivedAt")
        assert parse_timestamp(payloads[name]["timestamp"], "timestamp") == received - timedelta(seconds=5)
    assert payloads["G"]["timestamp"] == "2020-01-01T00:00:00.000000Z"  # set by the sender: kept
    await drain(runtime)
    async with runtime.engine.connect() as conn:
        stored = dict((await conn.execute(sa.select(col(Event.event), col(Event.timestamp)))).all())
    assert abs(stored["E"] - datetime.now(stored["E"].tzinfo)) < timedelta(minutes=1)


@pytest.mark.parametrize(
    "echo",
    [
        {"integrations": {"Webhooks": False}},
        {"context": {"integration": {"name": "hull-segment-connector", "version": "0.1.0"}}},
    ],
    ids=["integrations-false", "own-integration-name"],
)
async def test_own_echo_is_acknowledged_and_dropped(client, runtime, echo):
    response = await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u1", **echo})
    assert response.status_code == 200
    assert response.json() == {"success": True, "accepted": 0, "skipped": 1}
    assert set((await stored_counts(runtime)).values()) == {0}


async def test_loop_guard_follows_the_configured_names(client, runtime):
    await client.put("/api/settings", headers=admin_auth(), json={"integration_name": "Hull", "connector_name": "mine"})
    others = {"userId": "u1", "integrations": {"Webhooks": False}, "context": {"integration": {"name": "other"}}}
    assert (await client.post("/v1/identify", headers=basic_auth(), json=others)).json()["accepted"] == 1
    ours = {"userId": "u2", "context": {"integration": {"name": "mine"}}}
    assert (await client.post("/v1/identify", headers=basic_auth(), json=ours)).json()["skipped"] == 1
    hull = {"userId": "u3", "integrations": {"Hull": False}}
    assert (await client.post("/v1/identify", headers=basic_auth(), json=hull)).json()["skipped"] == 1


async def test_a_wrong_basic_key_is_refused_before_the_body_is_read(client, runtime):
    """An unauthenticated caller cannot make the server read and parse a large body."""
    oversized = b'{"batch": [' + b" " * (600 * 1024) + b"]}"
    response = await client.post(
        "/v1/batch", headers={**basic_auth("wrong-key"), "Content-Type": "application/json"}, content=oversized
    )
    assert response.status_code == 401
    single = await client.post("/v1/track", headers=basic_auth("wrong-key"), content=b"{not json")
    assert single.status_code == 401
