"""Membership follows processed messages, merges and the clock; every change is a transition."""

from datetime import timedelta

import httpx
import sqlalchemy as sa

from connector.core.models import OutboxItem, SegmentMembership, SegmentTransition, utcnow
from connector.segments.schedule import recompute_due
from tests.support.api import create_segment
from tests.support.app import admin_auth, basic_auth, drain, wait_until

ORDERED = {"event": "Order Completed", "count": {"gte": 2}, "within_days": 30}


async def post(client, path, body):
    response = await client.post(path, headers=basic_auth(), json=body)
    assert response.status_code == 200, response.text


async def user_segments(client, user_id):
    return (await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())).json()["segments"]


async def history(runtime, segment_id):
    table = SegmentTransition.__table__
    async with runtime.engine.connect() as conn:
        return [
            tuple(row)
            for row in await conn.execute(
                sa.select(table.c.id, table.c.entity_id, table.c.transition)
                .where(table.c.segment_id == segment_id)
                .order_by(table.c.id)
            )
        ]


async def test_identify_and_track_move_users_in_and_out(client, runtime):
    pro = await create_segment(client, "Pro", {"attribute": "traits.plan", "op": "eq", "value": "pro"})
    buyers = await create_segment(client, "Buyers", ORDERED)
    await post(client, "/v1/identify", {"userId": "ada", "traits": {"plan": "pro"}})
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Pro"]

    await post(client, "/v1/track", {"userId": "ada", "event": "Order Completed", "messageId": "order-1"})
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Pro"]  # one order of the two needed
    await post(
        client,
        "/v1/batch",
        {
            "batch": [
                {"type": "track", "userId": "ada", "event": "Order Completed", "messageId": "order-2"},
                {"type": "identify", "userId": "ada", "traits": {"plan": "free"}},
            ]
        },
    )
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Buyers"]

    pro_history, buyer_history = await history(runtime, pro), await history(runtime, buyers)
    assert [kind for _, _, kind in pro_history] == ["entered", "exited"]
    assert [kind for _, _, kind in buyer_history] == ["entered"]
    async with runtime.engine.connect() as conn:
        keys = set((await conn.execute(sa.select(OutboxItem.__table__.c.key))).scalars())
    assert {f"transition:{row[0]}" for row in pro_history + buyer_history} <= keys
    assert f"user:{pro_history[0][1]}" in keys


async def test_account_trait_changes_move_the_accounts_users(client, runtime):
    await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    await runtime.settings.reload()
    big = await create_segment(
        client, "Big customers", {"attribute": "account.traits.employees", "op": "gte", "value": 100}
    )
    await post(client, "/v1/group", {"userId": "ada", "groupId": "acme", "traits": {"employees": 50}})
    await post(client, "/v1/group", {"userId": "bob", "groupId": "acme"})
    await drain(runtime)
    assert await user_segments(client, "ada") == [] and await user_segments(client, "bob") == []

    await post(client, "/v1/group", {"userId": "ada", "groupId": "acme", "traits": {"employees": 150}})
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Big customers"]
    assert await user_segments(client, "bob") == ["Big customers"]
    assert len(await history(runtime, big)) == 2


async def test_merged_away_profiles_leave_their_memberships(client, runtime):
    await create_segment(client, "Pro", {"attribute": "traits.plan", "op": "eq", "value": "pro"})
    await post(client, "/v1/identify", {"anonymousId": "anon-1", "traits": {"plan": "pro"}})
    await post(client, "/v1/identify", {"userId": "ada", "traits": {"plan": "pro"}})
    await drain(runtime)
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(SegmentMembership.__table__)) == 2
    await post(client, "/v1/alias", {"userId": "ada", "previousId": "anon-1"})
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Pro"]
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(SegmentMembership.__table__)) == 1


async def test_time_based_rules_are_recomputed_on_schedule(client, runtime):
    recent = await create_segment(client, "Recent buyers", {"event": "Order Completed", "within_days": 7})
    fresh = await create_segment(
        client, "Fresh trial", {"attribute": "traits.trial_started", "op": "within_last_days", "value": 3}
    )
    static = await create_segment(client, "Pro", {"attribute": "traits.plan", "op": "eq", "value": "pro"})
    now = utcnow()
    await post(client, "/v1/track", {"userId": "ada", "event": "Order Completed", "timestamp": now.isoformat()})
    await post(
        client,
        "/v1/identify",
        {"userId": "ada", "traits": {"plan": "pro", "trial_started": now.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )
    await drain(runtime)
    assert await user_segments(client, "ada") == ["Fresh trial", "Pro", "Recent buyers"]

    # Computed just now: not due yet within the interval.
    assert await recompute_due(runtime.engine, 3600, now + timedelta(minutes=10)) == []
    assert await user_segments(client, "ada") == ["Fresh trial", "Pro", "Recent buyers"]

    assert sorted(await recompute_due(runtime.engine, 3600, now + timedelta(days=4))) == sorted([recent, fresh])
    assert await user_segments(client, "ada") == ["Pro", "Recent buyers"]
    assert await recompute_due(runtime.engine, 3600, now + timedelta(days=4, minutes=1)) == []
    assert sorted(await recompute_due(runtime.engine, 3600, now + timedelta(days=8))) == sorted([recent, fresh])
    assert await user_segments(client, "ada") == ["Pro"]
    assert [kind for _, _, kind in await history(runtime, recent)] == ["entered", "exited"]
    assert [kind for _, _, kind in await history(runtime, static)] == ["entered"]


async def test_the_worker_loop_runs_the_schedule(live_server_factory):
    server = live_server_factory(run_worker_in_web=True, segment_recompute_seconds=0.2)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post(
            "/api/segments",
            headers=admin_auth(),
            json={"name": "Seen", "rule": {"attribute": "last_seen_at", "op": "within_last_days", "value": 1}},
        )
        assert response.status_code == 201, response.text
        first = response.json()["computed_at"]

        async def recomputed():
            return (await http.get("/api/segments", headers=admin_auth())).json()["segments"][0]["computed_at"] != first

        await wait_until(recomputed, timeout=10)
