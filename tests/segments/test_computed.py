"""Segments over computed attributes: usage.* and incoming Engage audiences, end to end.

Messages go through the inbound API and the worker; segments are created through the admin
API, either before the messages (the incremental, Python path) or after them (the initial,
set-based SQL recompute), and both must give the same members.
"""

import uuid
from datetime import timedelta

import sqlalchemy as sa

from connector.core.kinds import Entity
from connector.core.models import SegmentTransition, utcnow
from connector.core.spec import format_timestamp
from connector.profile.attributes import EventNeeds, load_profiles
from connector.segments.schedule import recompute_due
from tests.support.api import post_call
from tests.support.app import admin_auth, drain

ACTIVE = {"attribute": "usage.events_30d", "op": "gte", "value": 3}
EXPORTERS = {"attribute": "usage.top_features", "op": "contains", "value": "export"}
HAPPY = {"attribute": "usage.score_30d", "op": "gt", "value": 0}
SHOPPERS = {"audience": "first_time_shopper"}


def feature_used(user, feature, at, flag=None):
    properties = {"feature": feature, **({"eventFlag": flag} if flag else {})}
    return {
        "userId": user,
        "event": "Feature Used",
        "properties": properties,
        "timestamp": format_timestamp(at),
        "messageId": str(uuid.uuid4()),
    }


async def create(client, name, rule, entity="user"):
    response = await client.post(
        "/api/segments", headers=admin_auth(), json={"name": name, "rule": rule, "entity": entity}
    )
    assert response.status_code == 201, response.text
    return response.json()


async def segment(client, segment_id):
    return (await client.get(f"/api/segments/{segment_id}", headers=admin_auth())).json()


async def user_segments(client, user_id):
    return (await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())).json()["segments"]


async def test_usage_rules_select_users_by_feature_usage(client, runtime):
    now = utcnow()
    active_before = await create(client, "Active (before)", ACTIVE)
    happy_before = await create(client, "Happy (before)", HAPPY)
    for flag in ("positive", "positive", None):
        await post_call(client, "track", **feature_used("ada", "export", now, flag))
    await post_call(client, "track", **feature_used("bob", "search", now, "negative"))
    await post_call(client, "track", **feature_used("bob", "export", now - timedelta(days=40), "positive"))
    await post_call(client, "track", **feature_used("eve", "search", now - timedelta(days=40)))
    for day in range(3):  # three uses, but the oldest is outside the 30-day window
        await post_call(client, "track", **feature_used("eve", "search", now - timedelta(days=28 + day)))
    await drain(runtime)

    active_after = await create(client, "Active (after)", ACTIVE)
    exporters = await create(client, "Exporters", EXPORTERS)
    assert await user_segments(client, "ada") == ["Active (after)", "Active (before)", "Exporters", "Happy (before)"]
    # bob's export is 40 days old: still among his top features, not in his 30-day figures
    assert await user_segments(client, "bob") == ["Exporters"]
    assert await user_segments(client, "eve") == []
    assert [
        (await segment(client, item["id"]))["member_count"]
        for item in (active_before, active_after, happy_before, exporters)
    ] == [1, 1, 1, 2]
    assert active_after["time_based"] and not exporters["time_based"]


async def test_account_segments_read_the_accounts_usage(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    assert response.status_code == 200, response.text
    await runtime.settings.reload()
    busy = await create(client, "Busy accounts", ACTIVE, entity="account")
    now = utcnow()
    await post_call(client, "group", userId="ada", groupId="acme")
    await post_call(client, "group", userId="bob", groupId="acme")
    await post_call(client, "group", userId="eve", groupId="globex")
    for user in ("ada", "bob", "ada"):
        await post_call(client, "track", **feature_used(user, "reports", now))
    await post_call(client, "track", **feature_used("eve", "reports", now))
    await drain(runtime)

    # three uses by two users of acme: acme is busy although neither user is
    assert (await segment(client, busy["id"]))["member_count"] == 1
    recent = await create(
        client,
        "Recently used",
        {"attribute": "usage.last_feature_at", "op": "within_last_days", "value": 1},
        entity="account",
    )
    assert recent["member_count"] == 2 and recent["time_based"]
    acme = (await client.get("/api/accounts", params={"group_id": "acme"}, headers=admin_auth())).json()
    assert acme["segments"] == ["Busy accounts", "Recently used"]


async def test_audience_conditions_follow_entries_and_exits(client, runtime):
    shoppers = await create(client, "First-time shoppers", SHOPPERS)
    entered = utcnow() - timedelta(hours=2)
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Entered",
        timestamp=format_timestamp(entered),
        properties={"audience_key": "first_time_shopper"},
    )
    await post_call(
        client,
        "identify",
        userId="bob",
        traits={"first_time_shopper": True},
        timestamp=format_timestamp(entered),
        context={"personas": {"computation_class": "audience", "computation_key": "first_time_shopper"}},
    )
    await post_call(
        client,
        "track",
        userId="eve",
        event="Audience Entered",
        timestamp=format_timestamp(entered),
        properties={"audience_key": "vip"},
    )
    await drain(runtime)
    assert (await segment(client, shoppers["id"]))["member_count"] == 2
    assert (await create(client, "Shoppers, recomputed", SHOPPERS))["member_count"] == 2
    assert not shoppers["time_based"]

    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Exited",
        timestamp=format_timestamp(utcnow()),
        properties={"audience_key": "first_time_shopper"},
    )
    await drain(runtime)
    assert await user_segments(client, "ada") == []
    assert await user_segments(client, "bob") == ["First-time shoppers", "Shoppers, recomputed"]
    table = SegmentTransition.__table__
    async with runtime.engine.connect() as conn:
        history = (
            (
                await conn.execute(
                    sa.select(table.c.transition).where(table.c.segment_id == shoppers["id"]).order_by(table.c.id)
                )
            )
            .scalars()
            .all()
        )
    assert history == ["entered", "entered", "exited"]


async def test_usage_windows_move_with_the_clock(client, runtime):
    now = utcnow()
    active = await create(client, "Used this month", {"attribute": "usage.events_30d", "op": "gte", "value": 1})
    exporters = await create(client, "Exporters", EXPORTERS)
    await post_call(client, "track", **feature_used("ada", "export", now))
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Exporters", "Used this month"]

    # 31 days later, with no new message: the schedule takes ada out of the 30-day segment only
    assert await recompute_due(runtime.engine, 3600, now + timedelta(days=31)) == [active["id"]]
    assert await user_segments(client, "ada") == ["Exporters"]
    assert (await segment(client, exporters["id"]))["member_count"] == 1


async def test_load_profiles_reads_computed_attributes_in_batches(client, runtime):
    now = utcnow()
    for number in range(12):
        await post_call(client, "track", **feature_used(f"user-{number}", "export", now))
        await post_call(
            client,
            "track",
            userId=f"user-{number}",
            event="Audience Entered",
            properties={"audience_key": "vip"},
            timestamp=format_timestamp(now),
        )
    await drain(runtime)
    statements = []

    def count(*_args):
        statements.append(1)

    sa.event.listen(runtime.engine.sync_engine, "before_cursor_execute", count)
    try:
        async with runtime.engine.connect() as conn:
            ids = (await conn.execute(sa.text("SELECT id FROM users ORDER BY id"))).scalars().all()
            few = len(statements)
            two = await load_profiles(conn, Entity.USER, ids[:2], EventNeeds(), now)
            few, many = len(statements) - few, len(statements)
            twelve = await load_profiles(conn, Entity.USER, ids, EventNeeds(), now)
            many = len(statements) - many
    finally:
        sa.event.remove(runtime.engine.sync_engine, "before_cursor_execute", count)
    assert few == many
    assert all(profile.computed["usage"]["top_features"] == ["export"] for profile in twelve.values())
    assert all(profile.computed["audiences"] == {"vip": True} for profile in twelve.values())
    assert len(two) == 2 and len(twelve) == 12
