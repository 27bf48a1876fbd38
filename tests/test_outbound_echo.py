"""THE ECHO TEST: a workspace where the connector is both Segment's source and its destination.

The fake Segment posts everything it receives back to the connector's POST /segment.
The traffic must stop after one round, whether or not events are forwarded.
"""

import asyncio

import httpx
import pytest

from conftest import admin_auth, basic_auth, wait_until


QUIET_SECONDS = 2.5  # ten idle rounds of the worker: long enough for an echo to come around again


@pytest.mark.parametrize("forward_events", [False, True])
async def test_traffic_stops_after_one_round(live_server_factory, segment_api, forward_events):
    live = live_server_factory(run_worker_in_web=True)
    segment_api.echo_to(live.url + "/segment", basic_auth())
    async with httpx.AsyncClient(base_url=live.url, timeout=10) as http:
        saved = await http.put("/api/settings", headers=admin_auth(), json={
            "write_key": segment_api.write_key, "segment_api_host": segment_api.url,
            "synchronized_segments": ["ALL"], "send_events": ["ALL"], "forward_events": forward_events})
        assert saved.status_code == 200, saved.text
        await asyncio.sleep(1.1)  # the worker's settings cache
        sent = await http.post("/v1/batch", headers=basic_auth(), json={"batch": [
            {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}},
            {"type": "track", "userId": "u-1", "event": "Signed In", "messageId": "m-1"}]})
        assert sent.status_code == 200

        expected = {"identify", "track"} if forward_events else {"identify"}
        await wait_until(lambda: {m["type"] for m in segment_api.messages} == expected)
        await wait_until(lambda: segment_api.echo_posts == len(segment_api.bodies))
        requests = segment_api.requests
        await asyncio.sleep(QUIET_SECONDS)
        assert segment_api.requests == requests
        assert sorted(m["type"] for m in segment_api.messages) == sorted(expected)
        assert segment_api.echo_posts >= 1
        status = (await http.get("/api/status", headers=admin_auth())).json()
        assert sum(status["journal"].values()) == 2  # our two calls; the echoes were dropped at the door
