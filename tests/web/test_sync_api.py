"""The first sync and its progress in the admin API: saving settings that add a segment to the outbound filter
sends its members without a command (PUT /api/settings answers how many were queued), GET /api/sync follows the
latest sync, POST /api/sync sends everyone in the filter (what `connector resync` does); and the overview's last
errors name users as people know them."""

from typing import Any

from tests.support.app import admin_auth, basic_auth, drain
from tests.support.fake_segment import of_type, send_all

PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def admin(client: Any, method: str, path: str, expected: int = 200, **kw: Any) -> Any:
    response = await client.request(method, path, headers=admin_auth(), **kw)
    assert response.status_code == expected, response.text
    return response.json()


async def identify(client: Any, *messages: dict[str, Any]) -> None:
    batch = [{"type": "identify", **message} for message in messages]
    assert (await client.post("/v1/batch", headers=basic_auth(), json={"batch": batch})).status_code == 200


async def three_users_two_pro(client: Any, runtime: Any, segment_api: Any) -> None:
    """u-1 and u-2 on the pro plan, u-3 free; a write key set; the "Pro users" segment; nothing in the filter."""
    await identify(client, *({"userId": f"u-{n}", "traits": {"plan": "pro" if n < 3 else "free"}} for n in (1, 2, 3)))
    await admin(
        client, "PUT", "/api/settings", json={"write_key": segment_api.write_key, "segment_api_host": segment_api.url}
    )
    await admin(client, "POST", "/api/segments", 201, json={"name": "Pro users", "rule": PRO})
    await drain(runtime)
    await send_all(runtime)


async def test_saving_a_segment_into_the_filter_sends_its_members_without_a_command(client, runtime, segment_api):
    await three_users_two_pro(client, runtime, segment_api)
    assert segment_api.messages == [] and (await admin(client, "GET", "/api/sync")) == {"sync": None}

    saved = await admin(client, "PUT", "/api/settings", json={"synchronized_segments": ["Pro users"]})
    assert saved["queued"] == {"users": 2, "accounts": 0}
    sync = (await admin(client, "GET", "/api/sync"))["sync"]
    assert (sync["trigger"], sync["segments"], sync["queued"]) == (
        "settings",
        ["Pro users"],
        {"users": 2, "accounts": 0},
    )
    assert (sync["sent"], sync["waiting"]) == (0, 2)

    await send_all(runtime)
    assert sorted(message["userId"] for message in of_type(segment_api.messages, "identify")) == ["u-1", "u-2"]
    sync = (await admin(client, "GET", "/api/sync"))["sync"]
    assert (sync["sent"], sync["skipped"], sync["failed"], sync["waiting"]) == (2, 0, 0, 0)


async def test_saving_settings_that_add_no_segment_queues_nobody_and_starts_no_sync(client, runtime, segment_api):
    await three_users_two_pro(client, runtime, segment_api)
    await admin(client, "PUT", "/api/settings", json={"synchronized_segments": ["Pro users"]})
    first = (await admin(client, "GET", "/api/sync"))["sync"]

    saved = await admin(client, "PUT", "/api/settings", json={"forward_events": True})
    assert saved["queued"] == {"users": 0, "accounts": 0}
    assert (await admin(client, "GET", "/api/sync"))["sync"]["id"] == first["id"]


async def test_choosing_all_queues_every_user_and_a_member_already_sent_is_not_sent_twice(client, runtime, segment_api):
    await three_users_two_pro(client, runtime, segment_api)
    await admin(client, "PUT", "/api/settings", json={"synchronized_segments": ["Pro users"]})
    await send_all(runtime)

    saved = await admin(client, "PUT", "/api/settings", json={"synchronized_segments": ["Pro users", "ALL"]})
    assert saved["queued"] == {"users": 3, "accounts": 0}
    await send_all(runtime)
    assert sorted(message["userId"] for message in of_type(segment_api.messages, "identify")) == ["u-1", "u-2", "u-3"]
    sync = (await admin(client, "GET", "/api/sync"))["sync"]
    assert (sync["segments"], sync["sent"], sync["skipped"], sync["waiting"]) == (["ALL"], 1, 2, 0)


async def test_an_account_segment_added_to_the_filter_sends_a_group_call_for_its_accounts_users(
    client, runtime, segment_api
):
    await admin(client, "PUT", "/api/settings", json={"handle_accounts": True})
    for user, group, employees in (("u-1", "g-big", 500), ("u-2", "g-small", 5)):
        message = {"type": "group", "userId": user, "groupId": group, "traits": {"employees": employees}}
        assert (await client.post("/v1/group", headers=basic_auth(), json=message)).status_code == 200
    big = {"attribute": "traits.employees", "op": "gte", "value": 100}
    await admin(client, "POST", "/api/segments", 201, json={"name": "Big", "entity": "account", "rule": big})
    await drain(runtime)
    await admin(
        client,
        "PUT",
        "/api/settings",
        json={
            "write_key": segment_api.write_key,
            "segment_api_host": segment_api.url,
            "synchronized_segments": ["ALL"],
        },
    )
    await send_all(runtime)
    assert of_type(segment_api.messages, "group") == []

    saved = await admin(client, "PUT", "/api/settings", json={"synchronized_account_segments": ["Big"]})
    assert saved["queued"] == {"users": 0, "accounts": 1}
    await send_all(runtime)
    assert [(m["userId"], m["groupId"]) for m in of_type(segment_api.messages, "group")] == [("u-1", "g-big")]


async def test_send_to_everyone_now_queues_the_filter_and_reports_its_progress(client, runtime, segment_api):
    await three_users_two_pro(client, runtime, segment_api)
    await admin(client, "PUT", "/api/settings", json={"synchronized_segments": ["Pro users"]})
    await send_all(runtime)

    started = (await admin(client, "POST", "/api/sync"))["sync"]
    assert (started["trigger"], started["segments"], started["queued"]) == (
        "resync",
        ["Pro users"],
        {"users": 2, "accounts": 0},
    )
    assert started["waiting"] == 2
    await send_all(runtime)
    sync = (await admin(client, "GET", "/api/sync"))["sync"]
    assert (sync["sent"], sync["skipped"], sync["waiting"]) == (0, 2, 0)  # Segment holds them unchanged
    assert len(of_type(segment_api.messages, "identify")) == 2


async def test_send_to_everyone_now_without_a_write_key_or_a_segment_is_refused_naming_the_setting(client):
    refused = await admin(client, "POST", "/api/sync", 409)
    assert refused["field"] == "write_key" and "no write key" in refused["message"]
    await admin(client, "PUT", "/api/settings", json={"write_key": "a-write-key"})
    refused = await admin(client, "POST", "/api/sync", 409)
    assert refused["field"] == "synchronized_segments"
    assert (await admin(client, "GET", "/api/sync")) == {"sync": None}


async def test_the_last_errors_name_a_user_by_user_id_else_email_else_internal_id(client, runtime, segment_api):
    await admin(
        client,
        "PUT",
        "/api/settings",
        json={
            "write_key": segment_api.write_key,
            "segment_api_host": segment_api.url,
            "synchronized_segments": ["ALL"],
            "identify_by_email": True,
        },
    )
    await identify(
        client,
        {"userId": "u-8", "traits": {"email": "eight@example.com"}},
        {"anonymousId": "a-9", "traits": {"email": "nine@example.com"}},
        {"anonymousId": "a-10"},
    )
    await drain(runtime)
    segment_api.fail(400, count=1)
    await send_all(runtime)
    errors = (await admin(client, "GET", "/api/overview"))["last_errors"]
    named = {error["name"]: error for error in errors}
    assert sorted(named, key=str) == [None, "nine@example.com", "u-8"]
    assert named[None]["entity"] == "user" and named[None]["entity_id"] > 0  # the dashboard shows "user #<id>"
