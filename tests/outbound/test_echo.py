"""THE ECHO TEST: a workspace where the connector is both Segment's source and its destination.

The fake Segment posts everything it receives back to the connector's POST /segment.
The traffic must stop after one round, whether or not events are forwarded, and each
echoed message must be answered 200 and counted as skipped (not stored, not sent again).
"""

import asyncio
import functools

import httpx
import pytest

from tests.support.api import create_segment
from tests.support.app import admin_auth, basic_auth, wait_until

QUIET_SECONDS = 2.5  # ten idle rounds of the worker: long enough for an echo to come around again
CALLS = [
    {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}, "messageId": "m-0"},
    {"type": "track", "userId": "u-1", "event": "Signed In", "messageId": "m-1"},
]


async def save_settings(http, segment_api, **values):
    saved = await http.put(
        "/api/settings",
        headers=admin_auth(),
        json={"write_key": segment_api.write_key, "segment_api_host": segment_api.url, **values},
    )
    assert saved.status_code == 200, saved.text
    await asyncio.sleep(1.1)  # the worker's settings cache


async def assert_quiet_with_every_echo_dropped(http, segment_api, calls):
    """No request for a while, and every echoed message acknowledged (Segment must not retry it) and dropped as
    our own: the journal holds only our `calls`."""
    await wait_until(lambda: segment_api.echo_posts == len(segment_api.bodies))
    requests = segment_api.requests
    await asyncio.sleep(QUIET_SECONDS)
    assert segment_api.requests == requests
    assert segment_api.echo_answers and all(
        status == 200 and answer["accepted"] == 0 and answer["skipped"] == posted
        for status, posted, answer in segment_api.echo_answers
    )
    assert sum(posted for _, posted, _ in segment_api.echo_answers) == len(segment_api.messages)
    status = (await http.get("/api/status", headers=admin_auth())).json()
    assert sum(status["journal"].values()) == calls  # the echoes were dropped at the door


@pytest.mark.parametrize(
    "entry,forward_events,expected",
    [
        # Segment delivers the workspace's calls: its events come back only with forward_events.
        ("/segment", False, {"identify"}),
        ("/segment", True, {"identify", "track"}),
        # A library posts straight to the connector: those events never went through Segment.
        ("/v1/batch", False, {"identify", "track"}),
    ],
)
async def test_traffic_stops_after_one_round(live_server_factory, segment_api, entry, forward_events, expected):
    live = live_server_factory(run_worker_in_web=True)
    segment_api.echo_to(live.url + "/segment", basic_auth())
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        await save_settings(
            http, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=forward_events
        )
        body = CALLS if entry == "/segment" else {"batch": CALLS}
        sent = await http.post(entry, headers=basic_auth(), json=body)
        assert sent.status_code == 200 and sent.json()["accepted"] == 2, sent.text

        await wait_until(lambda: {m["type"] for m in segment_api.messages} == expected)
        await assert_quiet_with_every_echo_dropped(http, segment_api, calls=2)
        assert sorted(m["type"] for m in segment_api.messages) == sorted(expected)


async def test_the_echo_of_segment_events_changes_nothing(live_server_factory, segment_api):
    """Added and changed events, and the identify beside them, come back from Segment: all dropped as our own,
    and the traffic stops after one round."""
    live = live_server_factory(run_worker_in_web=True)
    segment_api.echo_to(live.url + "/segment", basic_auth())
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        await create_segment(http, "Pro Users", {"attribute": "traits.plan", "op": "eq", "value": "pro"})
        await save_settings(
            http,
            segment_api,
            synchronized_segments=["ALL"],
            synchronized_properties=[{"from": "traits.plan", "to": "tier"}],
            forward_events=True,
            send_events=["ALL"],
            segment_events=[
                {
                    "segment": "Pro Users",
                    "added": "Pro Started",
                    "changed": "Pro Updated",
                    "removed": "Pro Ended",
                    "properties": [{"from": "traits.seats", "to": "seat_count"}],
                }
            ],
        )

        def sent() -> list[str]:
            return sorted(m.get("event", m["type"]) for m in segment_api.messages)

        def sent_is(expected: list[str]) -> bool:
            return sent() == expected

        for seats, expected in ((3, ["Pro Started", "identify"]), (4, ["Pro Started", "Pro Updated", "identify"])):
            call = {"type": "identify", "userId": "u-1", "traits": {"plan": "pro", "seats": seats}}
            assert (await http.post("/v1/identify", headers=basic_auth(), json=call)).status_code == 200
            await wait_until(functools.partial(sent_is, expected))
        await assert_quiet_with_every_echo_dropped(http, segment_api, calls=2)
        assert sent() == ["Pro Started", "Pro Updated", "identify"]
