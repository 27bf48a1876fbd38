"""The activity log: per user and account, what came in, which segments changed, what was sent or
skipped and why; read newest first through the admin API; and what would be sent for a user now."""

import pytest

from connector.outbound import transport
from tests.support.api import create_segment, post_batch
from tests.support.app import admin_auth, basic_auth, drain
from tests.support.fake_segment import configure, send_all, user_id_of


async def activity(client, user, **params):
    response = await client.get(f"/api/users/{user}/activity", headers=admin_auth(), params=params)
    assert response.status_code == 200, response.text
    return response.json()["activity"]


async def actions(client, user):
    """(action, details) of every entry, newest first."""
    return [(entry["action"], entry["details"]) for entry in await activity(client, user)]


def of(entries, action):
    return [details for name, details in entries if name == action]


PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def test_an_identify_names_the_traits_it_changed_and_a_track_the_event_it_added(client, runtime):
    await post_batch(
        client,
        {
            "type": "identify",
            "userId": "ada",
            "messageId": "m-1",
            "timestamp": "2024-05-01T10:00:00Z",
            "traits": {"plan": "pro", "name": "Ada"},
        },
    )
    await drain(runtime)
    await post_batch(
        client,
        {
            "type": "identify",
            "userId": "ada",
            "messageId": "m-2",
            "timestamp": "2024-05-01T11:00:00Z",
            "traits": {"plan": "pro", "email": "ada@example.com"},
        },
        {
            "type": "track",
            "userId": "ada",
            "messageId": "m-3",
            "event": "Order Completed",
            "timestamp": "2024-05-01T11:00:01Z",
        },
    )
    await drain(runtime)

    entries = await activity(client, await user_id_of(runtime, "ada"))
    assert [(entry["action"], entry["message_id"]) for entry in entries] == [
        ("incoming.user.success", "m-3"),
        ("incoming.user.success", "m-2"),
        ("incoming.user.success", "m-1"),
    ]
    track, second, first = (entry["details"] for entry in entries)
    assert sorted(first["traits_changed"]) == ["name", "plan"]
    assert second["traits_changed"] == ["email"]  # plan was already pro
    assert track["events_added"] == ["Order Completed"]


async def test_a_late_identify_changes_no_trait_and_says_so(client, runtime):
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "timestamp": "2024-05-01T10:00:00Z", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "ada", "timestamp": "2024-04-01T10:00:00Z", "traits": {"plan": "free"}},
    )
    await drain(runtime)
    entries = await actions(client, await user_id_of(runtime, "ada"))
    assert [details["traits_changed"] for details in of(entries, "incoming.user.success")] == [[], ["plan"]]


async def test_a_group_is_in_the_users_and_the_accounts_activity(client, runtime):
    await runtime.settings.save({"handle_accounts": True})
    await post_batch(
        client,
        {
            "type": "group",
            "userId": "ada",
            "groupId": "g-1",
            "messageId": "g-msg",
            "traits": {"name": "Acme", "employees": 12},
        },
    )
    await drain(runtime)
    user = await user_id_of(runtime, "ada")
    [(action, details)] = await actions(client, user)
    assert action == "incoming.user.success" and details["type"] == "group" and details["account_linked"] is True
    response = await client.get(f"/api/accounts/{details['account_id']}/activity", headers=admin_auth())
    assert response.status_code == 200, response.text
    [entry] = response.json()["activity"]
    assert (entry["action"], entry["message_id"]) == ("incoming.account.success", "g-msg")
    assert sorted(entry["details"]["traits_changed"]) == ["employees", "name"]


async def test_entering_and_leaving_a_segment_is_logged_with_its_name(client, runtime):
    await create_segment(client, "Pro", PRO)
    await post_batch(
        client, {"type": "identify", "userId": "ada", "timestamp": "2024-05-01T10:00:00Z", "traits": {"plan": "pro"}}
    )
    await drain(runtime)
    await post_batch(
        client, {"type": "identify", "userId": "ada", "timestamp": "2024-05-01T11:00:00Z", "traits": {"plan": "free"}}
    )
    await drain(runtime)
    entries = await actions(client, await user_id_of(runtime, "ada"))
    segment_entries = [(action, details["segment"]) for action, details in entries if action.startswith("segment.")]
    assert segment_entries == [("segment.exited", "Pro"), ("segment.entered", "Pro")]


async def test_a_new_segment_logs_the_entry_of_users_who_already_match(client, runtime):
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "bob", "traits": {"plan": "free"}},
    )
    await drain(runtime)
    await create_segment(client, "Pro", PRO)
    assert of(await actions(client, await user_id_of(runtime, "ada")), "segment.entered")[0]["segment"] == "Pro"
    assert of(await actions(client, await user_id_of(runtime, "bob")), "segment.entered") == []


async def test_a_delivered_identify_is_logged_with_what_was_sent(client, runtime, segment_api):
    await configure(
        runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["plan"], send_events=["ALL"]
    )
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "traits": {"plan": "pro", "name": "Ada"}},
        {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "order-1"},
    )
    await drain(runtime)
    await send_all(runtime)

    entries = await actions(client, await user_id_of(runtime, "ada"))
    sent = {details["type"]: details for details in of(entries, "outgoing.user.success")}
    [identify] = [message for message in segment_api.messages if message["type"] == "identify"]
    assert sent["identify"]["messageId"] == identify["messageId"]
    assert sent["identify"]["traits"] == {"plan": "pro", "hull_segments": []}
    assert (sent["track"]["messageId"], sent["track"]["event"]) == ("order-1", "Order Completed")


async def test_a_user_outside_the_filter_is_logged_as_skipped_with_the_reason(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["Paying"], send_events=["ALL"])
    await post_batch(
        client,
        {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "order-1"},
    )
    await drain(runtime)
    await send_all(runtime)
    assert segment_api.messages == []
    skipped = of(await actions(client, await user_id_of(runtime, "ada")), "outgoing.user.skip")
    assert {"reason": "not in synchronized segments"} in skipped
    assert {"reason": "not in synchronized segments", "event": "Order Completed"} in [
        {key: details[key] for key in ("reason", "event") if key in details} for details in skipped
    ]


async def test_events_held_back_by_the_settings_are_logged_with_their_reason(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["Wanted"])
    await post_batch(client, {"type": "track", "userId": "ada", "event": "Unwanted", "messageId": "api-1"})
    response = await client.post(
        "/segment",
        headers=basic_auth(),
        json={"type": "track", "userId": "ada", "event": "Wanted", "messageId": "seg-1"},
    )
    assert response.status_code == 200, response.text
    await drain(runtime)
    await send_all(runtime)
    skipped = {
        details.get("event"): details["reason"]
        for details in of(await actions(client, await user_id_of(runtime, "ada")), "outgoing.user.skip")
    }
    assert skipped["Unwanted"] == "event not in send_events"
    assert skipped["Wanted"] == "received from segment and forward_events is off"


async def test_an_identify_already_delivered_is_logged_as_unchanged(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["plan"])
    await post_batch(client, {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}})
    await drain(runtime)
    await send_all(runtime)
    await post_batch(
        client, {"type": "identify", "userId": "ada", "traits": {"name": "Ada"}}
    )  # not a synchronized trait
    await drain(runtime)
    await send_all(runtime)
    assert len(segment_api.messages) == 1
    entries = await actions(client, await user_id_of(runtime, "ada"))
    newest_outgoing = next((action, details) for action, details in entries if action.startswith("outgoing."))
    assert newest_outgoing == ("outgoing.user.skip", {"reason": "unchanged"})


async def test_a_batch_segment_refuses_is_logged_as_a_dead_letter(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await post_batch(client, {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}})
    await drain(runtime)
    segment_api.fail(400, 1)
    await send_all(runtime)
    [dead] = of(await actions(client, await user_id_of(runtime, "ada")), "outgoing.user.dead_letter")
    assert dead["type"] == "identify" and dead["status"] == 400 and "400" in dead["reason"]


async def test_a_retried_batch_is_logged_as_an_error_then_as_sent(client, runtime, segment_api, monkeypatch):
    monkeypatch.setattr(transport, "BACKOFF_BASE_SECONDS", 0.001)
    monkeypatch.setattr(transport, "BACKOFF_CAP_SECONDS", 0.01)
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await post_batch(client, {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}})
    await drain(runtime)
    segment_api.fail(503, 1)
    for _ in range(20):  # until the backoff has passed and the row was sent
        await send_all(runtime)
        if segment_api.messages:
            break
    outgoing = [
        (action, details.get("status"))
        for action, details in await actions(client, await user_id_of(runtime, "ada"))
        if action.startswith("outgoing.")
    ]
    assert outgoing == [("outgoing.user.success", None), ("outgoing.user.error", 503)]


async def test_activity_is_newest_first_and_pages_with_before_id(client, runtime):
    await post_batch(
        client,
        *({"type": "track", "userId": "ada", "event": f"Step {n}", "messageId": f"step-{n}"} for n in range(1, 6)),
    )
    await drain(runtime)
    user = await user_id_of(runtime, "ada")
    seen, before = [], None
    while True:
        page = await activity(client, user, limit=2, **({"before_id": before} if before else {}))
        if not page:
            break
        assert len(page) <= 2
        seen += [entry["message_id"] for entry in page]
        before = page[-1]["id"]
    assert seen == ["step-5", "step-4", "step-3", "step-2", "step-1"]


async def test_a_merge_keeps_the_history_of_both_profiles(client, runtime):
    # One drain each: the two are in different journal partitions, which two batches may apply in either order.
    await post_batch(
        client, {"type": "track", "anonymousId": "anon-1", "event": "Visited", "messageId": "before-login"}
    )
    await drain(runtime)
    await post_batch(client, {"type": "identify", "userId": "ada", "messageId": "signup", "traits": {"plan": "pro"}})
    await drain(runtime)
    await post_batch(client, {"type": "identify", "userId": "ada", "anonymousId": "anon-1", "messageId": "login"})
    await drain(runtime)
    entries = await activity(client, await user_id_of(runtime, "ada"))
    assert [entry["message_id"] for entry in entries] == ["login", "signup", "before-login"]


async def test_an_unknown_id_is_a_404_in_the_api_shape(client, runtime):
    for path in ("/api/users/987654/activity", "/api/accounts/987654/activity", "/api/users/987654/outgoing"):
        response = await client.get(path, headers=admin_auth())
        assert response.status_code == 404, path
        assert set(response.json()) == {"message"}


@pytest.mark.parametrize("in_filter", [True, False])
async def test_the_outgoing_route_shows_what_would_be_sent_now_and_why_not(client, runtime, segment_api, in_filter):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"] if in_filter else ["Paying"],
        synchronized_properties=["plan"],
    )
    await post_batch(client, {"type": "identify", "userId": "ada", "anonymousId": "a-1", "traits": {"plan": "pro"}})
    await drain(runtime)
    user = await user_id_of(runtime, "ada")
    response = await client.get(f"/api/users/{user}/outgoing", headers=admin_auth())
    assert response.status_code == 200, response.text
    answer = response.json()
    if in_filter:
        [identify] = answer["messages"]
        assert (identify["type"], identify["userId"], identify["traits"]) == (
            "identify",
            "ada",
            {"plan": "pro", "hull_segments": []},
        )
        assert answer["not_sent"] == []
        await send_all(runtime)
        assert segment_api.messages[0]["messageId"] == identify["messageId"]  # the same message the sender sent
        again = (await client.get(f"/api/users/{user}/outgoing", headers=admin_auth())).json()
        assert (again["messages"], again["not_sent"]) == ([], ["unchanged"])
        [last] = again["last_sent"]  # what was delivered, as the sender logged it
        assert (last["message_id"], last["details"]["traits"]) == (identify["messageId"], identify["traits"])
    else:
        assert answer == {"messages": [], "not_sent": ["not in synchronized segments"], "last_sent": []}
        await send_all(runtime)
        assert segment_api.messages == []


async def test_the_outgoing_route_says_when_no_write_key_is_set(client, runtime):
    await runtime.settings.save({"synchronized_segments": ["ALL"]})
    await post_batch(client, {"type": "identify", "userId": "ada", "traits": {"plan": "pro"}})
    await drain(runtime)
    answer = (await client.get(f"/api/users/{await user_id_of(runtime, 'ada')}/outgoing", headers=admin_auth())).json()
    assert [message["type"] for message in answer["messages"]] == ["identify"]
    assert answer["not_sent"] == ["no write_key in settings: nothing is sent"]


async def test_a_delivered_group_is_in_the_accounts_activity(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_account_segments=["ALL"],
        handle_accounts=True,
        synchronized_account_properties=["name"],
    )
    await post_batch(client, {"type": "group", "userId": "ada", "groupId": "g-1", "traits": {"name": "Acme"}})
    await drain(runtime)
    await send_all(runtime)
    [group] = [message for message in segment_api.messages if message["type"] == "group"]
    [(_, details)] = [
        entry
        for entry in await actions(client, await user_id_of(runtime, "ada"))
        if entry[0] == "incoming.user.success"
    ]
    response = await client.get(f"/api/accounts/{details['account_id']}/activity", headers=admin_auth())
    sent = [entry["details"] for entry in response.json()["activity"] if entry["action"] == "outgoing.account.success"]
    assert [(entry["messageId"], entry["groupId"], entry["traits"]["name"]) for entry in sent] == [
        (group["messageId"], "g-1", "Acme")
    ]
