"""The round-trip test (POST /api/segment-workspace/round-trip): one test event out through the write key,
delivered back to /segment by the fake Segment acting as the workspace the fake Public API describes, all over
real HTTP to a live connector."""

from typing import Any

import httpx
import sqlalchemy as sa

from connector.core.db import create_engine
from connector.core.models import JournalEntry
from connector.flow.round_trips import NONCE, ROUND_TRIP_EVENT
from tests.support.app import LiveServer, admin_auth, basic_auth, wait_until
from tests.support.fake_public_api import OWNER_TOKEN, FakePublicApi
from tests.support.fake_segment import FakeSegment


async def connected(own_url_server: LiveServer, public_api: FakePublicApi, segment: FakeSegment) -> httpx.AsyncClient:
    """The workspace connected, its way-back source's write key the fake Segment's; sending to the fake Segment."""
    public_api.add_source("hull-segment-connector", "meta-http-api", write_key=segment.write_key)
    website = next(s["id"] for s in public_api.sources.values() if s["name"] == "Website")
    http = httpx.AsyncClient(base_url=own_url_server.url, headers=admin_auth(), timeout=30)
    answer = await http.post("/api/segment-workspace", json={"token": OWNER_TOKEN, "source_ids": [website]})
    assert answer.status_code == 200, answer.text
    await http.put("/api/settings", json={"segment_api_host": segment.url})
    segment.deliver_through(public_api)
    return http


async def journal_rows(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            count: int = (
                await conn.execute(sa.select(sa.func.count()).select_from(JournalEntry.__table__))
            ).scalar_one()
            return count
    finally:
        await engine.dispose()


async def test_the_round_trip_works_and_says_how_long_it_took_and_the_test_event_is_never_stored(
    database_url, own_url_server, public_api, segment_api
):
    http = await connected(own_url_server, public_api, segment_api)
    answer = (await http.post("/api/segment-workspace/round-trip", json={"wait_seconds": 15})).json()
    assert answer["outcome"] == "works", answer
    assert 0 <= answer["seconds"] < 15
    assert answer["message"] == f"round trip works, {answer['seconds']} s"
    (sent,) = segment_api.messages
    assert sent["event"] == ROUND_TRIP_EVENT and "integrations" not in sent  # no loop flag: Segment delivers it
    assert [status for status, _ in segment_api.deliveries] == [200]
    assert await journal_rows(database_url) == 0
    status = (await http.get("/api/segment-workspace")).json()
    assert status["round_trip"]["outcome"] == "works"
    await http.aclose()


async def test_with_a_shared_secret_the_round_trip_comes_back_signed_and_works(own_url_server, public_api, segment_api):
    """Segment signs what a Webhooks destination with a shared secret delivers; /segment then requires it."""
    async with httpx.AsyncClient(base_url=own_url_server.url, headers=admin_auth()) as http:
        assert (await http.put("/api/settings", json={"shared_secret": "s3cret-shared-value"})).status_code == 200
    http = await connected(own_url_server, public_api, segment_api)
    answer = (await http.post("/api/segment-workspace/round-trip", json={"wait_seconds": 15})).json()
    assert answer["outcome"] == "works", answer
    assert [status for status, _ in segment_api.deliveries] == [200]
    await http.aclose()


async def test_a_test_event_that_never_comes_back_blames_the_destination(own_url_server, public_api, segment_api):
    http = await connected(own_url_server, public_api, segment_api)
    for destination in public_api.destinations.values():
        destination["enabled"] = False  # disabled in Segment
    answer = (await http.post("/api/segment-workspace/round-trip", json={"wait_seconds": 1})).json()
    assert answer["outcome"] == "lost"
    assert "never delivered it back" in answer["message"] and "Webhooks destination" in answer["message"]
    # Segment's tracking API answers 200 to a write key it does not know: that also ends here, so it is named.
    assert "that the write key is that source's" in answer["message"]
    await http.aclose()


async def test_a_test_event_refused_on_the_way_out_blames_the_write_key(own_url_server, public_api, segment_api):
    http = await connected(own_url_server, public_api, segment_api)
    segment_api.write_key = "another-key"  # Segment no longer knows the connector's write key
    answer = (await http.post("/api/segment-workspace/round-trip", json={"wait_seconds": 1})).json()
    assert answer["outcome"] == "refused"
    assert "refused the test event on the way out" in answer["message"] and "write key" in answer["message"]
    assert "segment_api_host" in answer["message"]  # the other setting the way out goes by
    await http.aclose()


async def test_a_round_trip_event_posted_to_segment_is_acknowledged_and_never_journaled(database_url, client):
    message: dict[str, Any] = {
        "type": "track",
        "event": ROUND_TRIP_EVENT,
        "anonymousId": "someone",
        "properties": {NONCE: "not-a-test-we-sent"},
    }
    answer = await client.post("/segment", headers=basic_auth(), json=message)
    assert answer.status_code == 200 and answer.json()["skipped"] == 1
    assert await journal_rows(database_url) == 0


async def test_in_a_connected_workspace_only_the_test_event_comes_back_never_the_connectors_own_calls(
    database_url, own_url_server, public_api, segment_api
):
    """The way-back source has a Webhooks destination (for the round trip); what the connector sends carries
    `integrations: {"Webhooks": false}`, so Segment delivers none of it there."""
    http = await connected(own_url_server, public_api, segment_api)
    everything = {"synchronized_segments": ["ALL"], "synchronized_account_segments": ["ALL"], "send_events": ["ALL"]}
    saved = await http.put("/api/settings", json={**everything, "handle_accounts": True})
    assert saved.status_code == 200, saved.text
    calls = [
        {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}},
        {"type": "group", "userId": "u-1", "groupId": "acme", "traits": {"name": "Acme"}},
        {"type": "track", "userId": "u-1", "event": "Signed In"},
    ]
    assert (await http.post("/v1/batch", headers=basic_auth(), json={"batch": calls})).status_code == 200
    await wait_until(lambda: {m["type"] for m in segment_api.messages} >= {"identify", "group", "track"}, timeout=30)
    answer = (await http.post("/api/segment-workspace/round-trip", json={"wait_seconds": 15})).json()
    assert answer["outcome"] == "works"
    assert [message["event"] for _, message in segment_api.deliveries] == [ROUND_TRIP_EVENT]
    assert await journal_rows(database_url) == 3  # the three calls; nothing came back
    await http.aclose()
