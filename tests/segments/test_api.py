"""The segments API: validation that names the bad part, member counts, rule changes, deletion."""

import pytest
import sqlalchemy as sa

from connector.core.models import OutboxItem, SegmentTransition
from tests.support.app import admin_auth, basic_auth, drain

PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def identify(client, user_id, **traits):
    response = await client.post("/v1/identify", headers=basic_auth(), json={"userId": user_id, "traits": traits})
    assert response.status_code == 200, response.text


async def transitions(runtime, segment_id):
    table = SegmentTransition.__table__
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(table.c.entity_id, table.c.transition, table.c.initial)
            .where(table.c.segment_id == segment_id)
            .order_by(table.c.id)
        )
        return [tuple(row) for row in rows]


async def outbox_keys(runtime):
    async with runtime.engine.connect() as conn:
        return set((await conn.execute(sa.select(OutboxItem.__table__.c.key))).scalars())


@pytest.mark.parametrize(
    "body, field",
    [
        (
            {"name": "x", "rule": {"all": [PRO, {"any": [{"attribute": "traits.a", "op": "eqq", "value": 1}]}]}},
            "rule.all[1].any[0].op",
        ),
        (
            {"name": "x", "rule": {"all": [PRO, {"attribute": "traits.plan", "op": "gt", "value": "10"}]}},
            "rule.all[1].value",
        ),
        ({"name": "x", "rule": {"any": [{"attribute": "plan", "op": "eq", "value": "pro"}]}}, "rule.any[0].attribute"),
        ({"name": "x", "rule": {"not": {"attribute": "created_at", "op": "contains", "value": "a"}}}, "rule.not.op"),
        ({"name": "x", "rule": {"all": [{"event": "Signed In", "count": {"gte": -1}}]}}, "rule.all[0].count.gte"),
        ({"name": "x", "rule": {"all": [{"event": "Signed In", "within_days": 0}]}}, "rule.all[0].within_days"),
        ({"name": "x", "rule": {"all": [{**PRO, "extra": 1}]}}, "rule.all[0].extra"),
        ({"name": "x", "rule": {"all": PRO}}, "rule.all"),
        ({"name": "x", "rule": {"all": [], "any": []}}, "rule"),
        # PostgreSQL cannot store U+0000 (found by the admin API fuzz test: it answered 500).
        ({"name": "x", "rule": {"attribute": "traits.plan", "op": "eq", "value": "p\x00ro"}}, "rule"),
        ({"name": "Pro\x00", "rule": PRO}, "name"),
        ({"name": "x", "rule": {"attribute": "traits.at", "op": "before", "value": "yesterday"}}, "rule.value"),
        ({"name": "x", "rule": {"attribute": "traits.a", "op": "exists", "value": 1}}, "rule.value"),
        ({"name": "x", "rule": {"attribute": "traits.a", "op": "in", "value": []}}, "rule.value"),
        ({"name": "x", "entity": "account", "rule": {"event": "Signed In"}}, "rule.event"),
        ({"name": "x", "entity": "account", "rule": {"attribute": "last_seen_at", "op": "exists"}}, "rule.attribute"),
        ({"name": "x", "entity": "group", "rule": PRO}, "entity"),
        ({"name": "x", "rule": {"all": [PRO, {"audience": ""}]}}, "rule.all[1].audience"),
        ({"name": "x", "rule": {"not": {"audience": " vip"}}}, "rule.not.audience"),
        ({"name": "x", "rule": {"audience": "vip", "member": True}}, "rule.member"),
        ({"name": "x", "entity": "account", "rule": {"audience": "vip"}}, "rule.audience"),
        ({"name": "x", "rule": {"attribute": "usage.top_features", "op": "gt", "value": 1}}, "rule.op"),
        ({"name": "x", "rule": {"attribute": "usage.trend", "op": "eq", "value": 1}}, "rule.op"),
        ({"name": "x", "rule": {"attribute": "usage.events_30d", "op": "gte", "value": "10"}}, "rule.value"),
        (
            {"name": "x", "rule": {"attribute": "usage.last_feature_at", "op": "within_last_days", "value": 0}},
            "rule.value",
        ),
        ({"name": "x", "rule": {"any": [{"attribute": "usage.events_7d", "op": "exists"}]}}, "rule.any[0].attribute"),
        ({"name": "", "rule": PRO}, "name"),
        ({"name": "x"}, "rule"),
        ({"name": "x", "rule": PRO, "color": "red"}, "color"),
    ],
)
async def test_invalid_segments_are_rejected_naming_the_bad_part(client, body, field):
    response = await client.post("/api/segments", headers=admin_auth(), json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert field in response.json()["message"]
    assert (await client.get("/api/segments", headers=admin_auth())).json()["segments"] == []


async def test_segments_need_the_admin_token(client):
    assert (await client.get("/api/segments")).status_code == 401
    assert (await client.post("/api/segments", json={"name": "x", "rule": PRO})).status_code == 401


async def test_create_computes_initial_members_then_counts_follow_changes(client, runtime):
    for user_id, plan in (("u1", "pro"), ("u2", "pro"), ("u3", "free")):
        await identify(client, user_id, plan=plan)
    await drain(runtime)

    response = await client.post("/api/segments", headers=admin_auth(), json={"name": "Pro users", "rule": PRO})
    assert response.status_code == 201, response.text
    segment = response.json()
    assert segment["member_count"] == 2 and segment["entity"] == "user" and segment["rule"] == PRO
    initial = await transitions(runtime, segment["id"])
    assert sorted(kind for _, kind, _ in initial) == ["entered", "entered"]
    assert all(is_initial for _, _, is_initial in initial)
    keys = await outbox_keys(runtime)
    assert {f"user:{entity_id}" for entity_id, _, _ in initial} <= keys

    await identify(client, "u3", plan="pro")
    await drain(runtime)
    assert (await client.get(f"/api/segments/{segment['id']}", headers=admin_auth())).json()["member_count"] == 3
    listed = (await client.get("/api/segments", headers=admin_auth())).json()["segments"]
    assert [(s["name"], s["member_count"]) for s in listed] == [("Pro users", 3)]
    profile = (await client.get("/api/users", params={"user_id": "u3"}, headers=admin_auth())).json()
    assert profile["segments"] == ["Pro users"]


async def test_a_changed_rule_recomputes_with_entered_and_exited(client, runtime):
    for user_id, plan in (("u1", "pro"), ("u2", "free")):
        await identify(client, user_id, plan=plan)
    await drain(runtime)
    segment = (await client.post("/api/segments", headers=admin_auth(), json={"name": "S", "rule": PRO})).json()
    before = await transitions(runtime, segment["id"])

    response = await client.put(
        f"/api/segments/{segment['id']}",
        headers=admin_auth(),
        json={"rule": {"attribute": "traits.plan", "op": "eq", "value": "free"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["member_count"] == 1
    changed = (await transitions(runtime, segment["id"]))[len(before) :]
    assert sorted(kind for _, kind, _ in changed) == ["entered", "exited"]
    assert not any(is_initial for _, _, is_initial in changed)
    assert {entity_id for entity_id, kind, _ in changed if kind == "exited"} == {before[0][0]}

    renamed = await client.put(f"/api/segments/{segment['id']}", headers=admin_auth(), json={"name": "Free"})
    assert renamed.json()["name"] == "Free" and renamed.json()["member_count"] == 1
    assert len(await transitions(runtime, segment["id"])) == len(before) + 2


async def test_names_are_unique_entity_is_fixed_and_delete_removes(client, runtime):
    first = (await client.post("/api/segments", headers=admin_auth(), json={"name": "A", "rule": PRO})).json()
    second = (await client.post("/api/segments", headers=admin_auth(), json={"name": "B", "rule": {"all": []}})).json()
    assert (
        await client.post("/api/segments", headers=admin_auth(), json={"name": "A", "rule": PRO})
    ).status_code == 409
    assert (
        await client.put(f"/api/segments/{second['id']}", headers=admin_auth(), json={"name": "A"})
    ).status_code == 409
    changed = await client.put(f"/api/segments/{first['id']}", headers=admin_auth(), json={"entity": "account"})
    assert changed.status_code == 400 and changed.json()["field"] == "entity"

    assert (await client.delete(f"/api/segments/{first['id']}", headers=admin_auth())).status_code == 204
    assert (await client.get(f"/api/segments/{first['id']}", headers=admin_auth())).status_code == 404
    assert (await client.delete(f"/api/segments/{first['id']}", headers=admin_auth())).status_code == 404
    assert [s["name"] for s in (await client.get("/api/segments", headers=admin_auth())).json()["segments"]] == ["B"]


async def test_account_segments_count_accounts(client, runtime):
    assert (await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})).status_code == 200
    await runtime.settings.reload()
    for group_id, employees in (("g1", 500), ("g2", 5)):
        response = await client.post(
            "/v1/group",
            headers=basic_auth(),
            json={"userId": f"u-{group_id}", "groupId": group_id, "traits": {"employees": employees}},
        )
        assert response.status_code == 200, response.text
    await drain(runtime)
    response = await client.post(
        "/api/segments",
        headers=admin_auth(),
        json={"name": "Big", "entity": "account", "rule": {"attribute": "traits.employees", "op": "gte", "value": 100}},
    )
    assert response.status_code == 201, response.text
    assert response.json()["member_count"] == 1
    account = (await client.get("/api/accounts", params={"group_id": "g1"}, headers=admin_auth())).json()
    assert account["segments"] == ["Big"]
    assert f"account:{account['id']}" in await outbox_keys(runtime)
