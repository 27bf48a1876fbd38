"""The endpoints the dashboard's pages read: the overview's series, the names for pickers, the segment
preview, entered/exited counts, profile search, per-trait times and what was last sent."""

from datetime import datetime, timedelta

import pytest

from connector.core.models import utcnow
from tests.support.api import post_batch
from tests.support.app import admin_auth, drain
from tests.support.fake_segment import add_segment, add_transition, configure, send_all, user_id_of


async def get(client, path, **params):
    response = await client.get(path, headers=admin_auth(), params=params)
    assert response.status_code == 200, response.text
    return response.json()


def identify(user, traits, at="2024-05-01T10:00:00Z", **extra):
    return {"type": "identify", "userId": user, "traits": traits, "timestamp": at, **extra}


def track(user, event, at="2024-05-01T10:00:00Z"):
    return {"type": "track", "userId": user, "event": event, "timestamp": at}


PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def test_the_overview_counts_the_last_24_hours_by_minute_in_and_out(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["Signed Up"])
    before = utcnow()
    await post_batch(
        client,
        identify("ada", {"plan": "pro"}),
        identify("bob", {"plan": "free"}),
        track("ada", "Signed Up"),
        track("ada", "Page Scrolled"),
    )
    await drain(runtime)
    await send_all(runtime)
    overview = await get(client, "/api/overview")
    after = utcnow()

    assert overview["buckets"] == 1440 and overview["step_seconds"] == 60
    # The last bucket is the current minute: the first starts 1439 minutes before it.
    start = datetime.fromisoformat(overview["start"].replace("Z", "+00:00"))
    first = {at.replace(second=0, microsecond=0) - timedelta(minutes=1439) for at in (before, after)}
    assert start in first
    totals = {name: sum(counts) for name, counts in overview["incoming"].items()}
    assert totals == {"identify.processed": 2, "track.processed": 2}
    assert all(len(counts) == 1440 for counts in overview["incoming"].values())
    # Two identifies and one track sent; the other track not (not in send_events): one skip.
    out = {name: sum(counts) for name, counts in overview["outgoing"].items()}
    assert out == {"sent": 3, "skipped": 1, "retried": 0, "dead_lettered": 0}
    # Everything happened in the last minute or two, never earlier.
    assert sum(overview["incoming"]["identify.processed"][-2:]) == 2
    assert overview["last_errors"] == []


async def test_the_overview_lists_dead_letters_and_retries_among_the_last_errors(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await post_batch(client, identify("ada", {"plan": "pro"}))
    await drain(runtime)
    segment_api.fail(400, 1)
    await send_all(runtime)
    overview = await get(client, "/api/overview")

    assert sum(overview["outgoing"]["dead_lettered"]) == 1
    [error] = overview["last_errors"]
    assert (error["kind"], error["entity"], error["status_code"]) == ("outgoing.user.dead_letter", "user", 400)
    assert error["reason"]


async def test_the_names_list_segments_traits_events_and_audiences_for_the_pickers(client, runtime):
    await post_batch(
        client,
        identify("ada", {"plan": "pro", "email": "ada@example.com", "first_time_shopper": True}),
        {"type": "group", "userId": "ada", "groupId": "g-1", "traits": {"employees": 12}},
        track("ada", "Signed Up"),
        track("ada", "Order Completed"),
        track("ada", "Order Completed", at="2024-05-02T10:00:00Z"),
        {
            "type": "track",
            "userId": "ada",
            "event": "Audience Entered",
            "properties": {"audience_key": "vip"},
            "timestamp": "2024-05-01T10:00:00Z",
        },
    )
    await runtime.settings.save({"handle_accounts": True})
    await drain(runtime)
    await add_segment(runtime, "Paying", [])
    await add_segment(runtime, "Big accounts", [], entity="account")
    names = await get(client, "/api/names")

    assert names["segments"] == {"user": ["Paying"], "account": ["Big accounts"]}
    assert names["events"] == ["Audience Entered", "Order Completed", "Signed Up"]
    assert names["audiences"] == ["vip"]
    assert names["traits"] == {"user": ["email", "first_time_shopper", "plan"], "account": ["employees"]}
    settings = names["settings"]
    assert settings["synchronized_segments"] == ["ALL", "Paying"]
    assert settings["synchronized_account_segments"] == ["ALL", "Big accounts"]
    assert settings["send_events"] == ["ALL", "Audience Entered", "Order Completed", "Signed Up"]
    assert settings["synchronized_properties"] == [  # traits spelled as the segment rules spell them
        "traits.email",
        "traits.first_time_shopper",
        "traits.plan",
        "usage.top_features",
        "usage.events_30d",
        "usage.score_30d",
        "usage.trend",
        "usage.last_feature_at",
        "usage.pattern",
        "persona.seniority",
        "persona.department",
        "audiences.vip",
        "account.traits.employees",
        "account.domain",
        "account.group_id",
        "account.usage.top_features",
        "account.usage.events_30d",
        "account.usage.score_30d",
        "account.usage.trend",
        "account.usage.last_feature_at",
        "account.usage.pattern",
        "account.icp.score",
        "account.icp.fit",
    ]
    assert "traits.plan" in names["attributes"]["user"] and "account.traits.employees" in names["attributes"]["user"]
    assert "traits.employees" in names["attributes"]["account"] and "domain" in names["attributes"]["account"]


async def test_a_preview_counts_what_the_saved_segment_then_holds(client, runtime):
    await post_batch(
        client,
        *(identify(f"u-{n}", {"plan": "pro" if n % 3 else "free", "email": f"u{n}@example.com"}) for n in range(14)),
    )
    await drain(runtime)
    preview = await client.post(
        "/api/segments/preview", headers=admin_auth(), json={"entity": "user", "rule": {"all": [PRO]}}
    )
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["count"] == 9  # 1, 2, 4, 5, 7, 8, 10, 11, 13
    # The identities sit in different journal partitions, so their users may be created in either order.
    sample = {user["user_id"]: user for user in body["sample"]}
    assert sorted(sample) == sorted(f"u-{n}" for n in (1, 2, 4, 5, 7, 8, 10, 11, 13))
    assert sample["u-1"]["email"] == "u1@example.com"

    created = await client.post("/api/segments", headers=admin_auth(), json={"name": "Pro", "rule": {"all": [PRO]}})
    assert created.status_code == 201, created.text
    assert created.json()["member_count"] == 9


async def test_a_preview_of_a_bad_rule_names_the_part_and_saves_nothing(client, runtime):
    bad = {"all": [{"attribute": "traits.plan", "op": "nope", "value": 1}]}
    response = await client.post("/api/segments/preview", headers=admin_auth(), json={"rule": bad})
    assert response.status_code == 400
    assert response.json()["field"] == "rule.all[0].op"
    account_event = {"entity": "account", "rule": {"event": "Signed Up"}}
    response = await client.post("/api/segments/preview", headers=admin_auth(), json=account_event)
    assert response.status_code == 400
    assert (await get(client, "/api/segments"))["segments"] == []


async def test_the_segment_list_counts_entries_and_exits_of_the_last_24_hours(client, runtime):
    await post_batch(client, *(identify(f"u-{n}", {"plan": "pro"}) for n in range(3)))
    await drain(runtime)
    ids = [await user_id_of(runtime, f"u-{n}") for n in range(3)]
    segment_id = await add_segment(runtime, "Paying", ids[:2])
    for user in ids:
        await add_transition(runtime, segment_id, user, "entered")
    await add_transition(runtime, segment_id, ids[2], "exited")
    [listed] = (await get(client, "/api/segments"))["segments"]
    assert (listed["member_count"], listed["entered_24h"], listed["exited_24h"]) == (2, 3, 1)


async def test_users_are_found_by_the_start_of_any_identifier_and_accounts_by_group_id_or_domain(client, runtime):
    await runtime.settings.save({"handle_accounts": True})
    # Ada's profile first, then Bob's (their calls are in different journal partitions, applied in either order).
    await post_batch(
        client,
        identify("user-ada", {"email": "Ada@Example.com"}, anonymousId="anon-1"),
        {"type": "group", "userId": "user-ada", "groupId": "acme-1", "traits": {"domain": "acme.com", "name": "Acme"}},
    )
    await drain(runtime)
    await post_batch(
        client,
        identify("user-bob", {"email": "bob@other.org"}),
        {"type": "group", "userId": "user-bob", "groupId": "other-1", "traits": {"domain": "other.org"}},
    )
    await drain(runtime)
    ada = await user_id_of(runtime, "user-ada")

    def found(body, key):
        return [match[key] for match in body["users"]]

    assert found(await get(client, "/api/users/search", q="user-"), "user_id") == ["user-ada", "user-bob"]
    assert found(await get(client, "/api/users/search", q="anon"), "id") == [ada]
    assert found(await get(client, "/api/users/search", q="ADA@ex"), "email") == ["Ada@Example.com"]
    assert found(await get(client, "/api/users/search", q="nobody"), "id") == []
    accounts = await get(client, "/api/accounts/search", q="ACME")
    assert [(a["group_id"], a["domain"], a["name"]) for a in accounts["accounts"]] == [("acme-1", "acme.com", "Acme")]
    assert [a["group_id"] for a in (await get(client, "/api/accounts/search", q="other-"))["accounts"]] == ["other-1"]
    response = await client.get("/api/users/search", headers=admin_auth(), params={"q": " "})
    assert (response.status_code, response.json()["field"]) == (400, "q")


async def test_a_profile_shows_when_each_trait_was_set_and_when_it_entered_each_segment(client, runtime):
    await post_batch(client, identify("ada", {"plan": "pro"}, at="2024-05-01T10:00:00Z"))
    await post_batch(client, identify("ada", {"name": "Ada"}, at="2024-05-03T08:30:00Z"))
    await drain(runtime)
    await client.post("/api/segments", headers=admin_auth(), json={"name": "Pro", "rule": PRO})
    profile = await get(client, "/api/users", user_id="ada")
    assert profile["trait_timestamps"] == {
        "plan": "2024-05-01T10:00:00.000000Z",
        "name": "2024-05-03T08:30:00.000000Z",
    }
    [membership] = profile["memberships"]
    assert membership["name"] == "Pro" and membership["entered_at"].endswith("Z")


async def test_outgoing_shows_the_last_identify_delivered_beside_what_would_be_sent_now(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["plan"])
    await post_batch(client, identify("ada", {"plan": "pro"}))
    await drain(runtime)
    await send_all(runtime)
    await post_batch(client, identify("ada", {"plan": "enterprise"}, at="2024-05-02T10:00:00Z"))
    await drain(runtime)
    user = await user_id_of(runtime, "ada")
    outgoing = await get(client, f"/api/users/{user}/outgoing")

    [last] = outgoing["last_sent"]
    assert last["action"] == "outgoing.user.success"
    assert last["details"]["type"] == "identify" and last["details"]["traits"]["plan"] == "pro"
    [now] = outgoing["messages"]
    assert now["traits"]["plan"] == "enterprise"


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/vendor/uplot/uPlot.esm.js"])
async def test_dashboard_files_allow_only_the_connector_s_own_origin(client, path):
    response = await client.get(path)
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "style-src 'self'" in policy
    assert "unsafe-inline" not in policy and "http" not in policy and "*" not in policy
