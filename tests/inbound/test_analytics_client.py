"""A real segment-analytics-python client talking to the app under uvicorn over a socket."""

import asyncio
from typing import Any

import httpx
import pytest
from segment.analytics import Client
from segment.analytics.request import APIError

from tests.support.app import API_KEY, admin_auth, wait_until
from tests.support.inbound_cases import assert_journey_stored, enable_accounts, find_user, journey


def send_with_client(client: Client, messages: list[dict[str, Any]]) -> None:
    """Replay messages through the library's public calls (it builds its own messageId, sentAt, context)."""
    for message in messages:
        ids = {"user_id": message.get("userId"), "anonymous_id": message.get("anonymousId")}
        kind = message["type"]
        if kind == "identify":
            client.identify(traits=message["traits"], **ids)
        elif kind == "track":
            client.track(event=message["event"], properties=message.get("properties"), **ids)
        elif kind == "page":
            client.page(name=message["name"], properties=message.get("properties"), **ids)
        elif kind == "screen":
            client.screen(name=message["name"], properties=message.get("properties"), **ids)
        elif kind == "group":
            client.group(group_id=message["groupId"], traits=message["traits"], **ids)
        elif kind == "alias":
            client.alias(previous_id=message["previousId"], user_id=message["userId"])
    client.flush()


@pytest.mark.parametrize("mode", ["sync", "queued-gzip"])
async def test_every_call_type_from_analytics_python(live_server_factory, mode):
    server = live_server_factory(run_worker_in_web=True)
    failures: list[Exception] = []
    client = Client(
        write_key=API_KEY,
        host=server.url,
        sync_mode=mode == "sync",
        gzip=mode != "sync",
        max_retries=0,
        upload_interval=0.05,
        on_error=lambda error, _batch: failures.append(error),
    )
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        await enable_accounts(http)
        await asyncio.to_thread(send_with_client, client, journey("lib-user"))
        if mode != "sync":
            await asyncio.to_thread(client.shutdown)  # sync mode has no consumer thread to stop
        assert failures == []
        profile = await wait_until(lambda: _journey_done(http, "lib-user"))
        await assert_journey_stored(http, "lib-user", "api")
        assert profile["recent_events"][0]["context"]["library"]["name"] == "analytics-python"


async def test_wrong_write_key_is_reported_to_the_library(live_server_factory):
    server = live_server_factory(run_worker_in_web=True)
    client = Client(write_key="not-the-key", host=server.url, sync_mode=True, max_retries=0)
    with pytest.raises(APIError) as refused:
        await asyncio.to_thread(client.identify, "u1", {"a": 1})
    assert refused.value.status == 401
    assert (refused.value.code, refused.value.message) == ("unauthorized", "invalid API key")
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        assert (await http.get("/api/users", params={"user_id": "u1"}, headers=admin_auth())).status_code == 404


async def _journey_done(http: httpx.AsyncClient, user_id: str) -> dict[str, Any] | None:
    profile = await find_user(http, user_id=user_id)
    if profile is None or profile["account"] is None or len(profile["identifiers"]["anonymous_id"]) < 2:
        return None
    return profile if len(profile["recent_events"]) == 4 else None
