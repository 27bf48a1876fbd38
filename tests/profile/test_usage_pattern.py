"""usage.pattern: new, growing, steady, declining, dormant, from constructed usage histories and as time passes.

Each history is a set of (days before today: event count) written here with the label it must get;
the label is read in Python (the computed attributes) and through the SQL compiler (a segment rule),
on SQLite and PostgreSQL.
"""

from datetime import UTC, datetime, time, timedelta

import pytest
import sqlalchemy as sa

from connector.core.kinds import Entity
from connector.core.models import FeatureUsage, User, utcnow
from connector.core.spec import format_timestamp
from connector.profile.computed import computed_attributes_of
from connector.segments.compile import Compiler
from connector.segments.schedule import recompute_due
from tests.support.app import admin_auth, basic_auth, drain

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)  # a Saturday
feature_usage = FeatureUsage.__table__
users = User.__table__

# {days before today: uses} -> label. recent = today and the 27 days before; previous = the 28 before those.
HISTORIES = [
    ({}, None),
    ({-2: 3}, None),  # only dated in the future: no use up to today
    ({0: 1}, "new"),
    ({13: 1, 0: 9}, "new"),  # first use 13 days ago: within 14 days
    ({14: 1}, "growing"),  # 14 days ago is no longer new; some use against none before
    ({60: 1, 29: 1}, "declining"),  # the last use 29 days ago: not yet dormant
    ({60: 4, 30: 1}, "dormant"),  # nothing in the 30 days up to today
    ({400: 1}, "dormant"),
    ({40: 10, 5: 10}, "steady"),
    ({40: 4, 5: 5}, "growing"),  # a quarter more exactly
    ({40: 5, 5: 6}, "steady"),  # a fifth more
    ({40: 4, 5: 3}, "declining"),  # a quarter less exactly
    ({40: 5, 5: 4}, "steady"),  # a fifth less
    ({100: 1, 27: 1}, "growing"),  # day 27 is the oldest of the recent window
    ({100: 1, 28: 1}, "declining"),  # day 28 is the newest of the previous one
    ({100: 1, 55: 2, 5: 2}, "steady"),  # day 55 is the oldest of the previous window
    ({100: 1, 56: 2, 5: 2}, "growing"),  # day 56 is in neither
    ({100: 1, 40: 2, 5: 2, -3: 50}, "steady"),  # future-dated use counts in neither window
]
LABELS = ["new", "growing", "steady", "declining", "dormant"]


async def store_history(conn, entity_id, history, entity="user", feature="export"):
    for days_ago, count in history.items():
        day = NOW.date() - timedelta(days=days_ago)
        at = datetime.combine(day, time(9), UTC)
        await conn.execute(
            feature_usage.insert().values(
                entity=entity,
                entity_id=entity_id,
                feature=feature,
                day=day,
                count=count,
                positive=0,
                negative=0,
                first_at=at,
                last_at=at,
            )
        )


async def new_users(conn, count):
    return [
        await conn.scalar(
            users.insert().values(traits={}, trait_timestamps={}, created_at=NOW, updated_at=NOW).returning(users.c.id)
        )
        for _ in range(count)
    ]


async def labels_in_python_and_sql(conn, ids, now):
    in_python = {
        user_id: values["usage"]["pattern"]
        for user_id, values in (await computed_attributes_of(conn, Entity.USER, ids, now)).items()
    }
    in_sql = dict.fromkeys(ids)
    for label in LABELS:
        rule = {"attribute": "usage.pattern", "op": "eq", "value": label}
        for user_id in (await conn.execute(Compiler(conn.dialect.name, Entity.USER, now).select_ids(rule))).scalars():
            in_sql[user_id] = label
    absent = {"attribute": "usage.pattern", "op": "not_exists"}
    none = set((await conn.execute(Compiler(conn.dialect.name, Entity.USER, now).select_ids(absent))).scalars())
    assert none == {user_id for user_id, label in in_sql.items() if label is None}
    return in_python, in_sql


async def ada_uses_a_feature(client, runtime, at) -> None:
    """Ada tracks a feature at `at`, through /v1/track, and the journal is applied."""
    await client.post(
        "/v1/track",
        headers=basic_auth(),
        json={
            "userId": "ada",
            "event": "Feature Used",
            "properties": {"feature": "export"},
            "timestamp": format_timestamp(at),
        },
    )
    await drain(runtime)


async def test_each_history_gets_the_label_written_beside_it(runtime):
    async with runtime.engine.begin() as conn:
        ids = await new_users(conn, len(HISTORIES))
        for user_id, (history, _) in zip(ids, HISTORIES, strict=True):
            await store_history(conn, user_id, history)
        # the pattern counts every feature of the profile: 4 uses of one before, 5 of another now
        (two_features,) = await new_users(conn, 1)
        await store_history(conn, two_features, {40: 4}, feature="export")
        await store_history(conn, two_features, {5: 5}, feature="search")
        in_python, in_sql = await labels_in_python_and_sql(conn, [*ids, two_features], NOW)
    expected = {user_id: label for user_id, (_, label) in zip(ids, HISTORIES, strict=True)} | {two_features: "growing"}
    assert in_python == expected
    assert in_sql == expected


@pytest.mark.parametrize(
    ("days_later", "label"),
    [(0, "new"), (13, "new"), (14, "growing"), (27, "growing"), (28, "declining"), (29, "declining"), (30, "dormant")],
)
async def test_time_alone_moves_one_day_of_use_from_new_to_dormant(runtime, days_later, label):
    async with runtime.engine.begin() as conn:
        (user_id,) = await new_users(conn, 1)
        await store_history(conn, user_id, {0: 5})
        in_python, in_sql = await labels_in_python_and_sql(conn, [user_id], NOW + timedelta(days=days_later))
    assert in_python == in_sql == {user_id: label}


async def test_an_account_has_its_own_pattern_and_the_profile_api_shows_both(client, runtime):
    assert (await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})).status_code == 200
    now = utcnow()
    await client.post("/v1/group", headers=basic_auth(), json={"userId": "ada", "groupId": "acme", "traits": {}})
    await drain(runtime)
    await ada_uses_a_feature(client, runtime, now)
    user = (await client.get("/api/users", params={"user_id": "ada"}, headers=admin_auth())).json()
    assert user["usage"]["pattern"] == "new"
    assert user["account"]["usage"]["pattern"] == "new"
    async with runtime.engine.begin() as conn:
        await store_history(conn, user["account"]["id"], {200: 1}, entity="account")
    account = (await client.get("/api/accounts", params={"group_id": "acme"}, headers=admin_auth())).json()
    assert account["usage"]["pattern"] == "growing"  # first used 200 days ago, used now
    user = (await client.get("/api/users", params={"user_id": "ada"}, headers=admin_auth())).json()
    assert user["usage"]["pattern"] == "new"


async def test_a_segment_on_the_pattern_is_recomputed_on_the_schedule_as_time_passes(client, runtime):
    now = utcnow()
    await ada_uses_a_feature(client, runtime, now)
    response = await client.post(
        "/api/segments",
        headers=admin_auth(),
        json={
            "name": "Dormant",
            "entity": "user",
            "rule": {"attribute": "usage.pattern", "op": "eq", "value": "dormant"},
        },
    )
    assert response.status_code == 201, response.text
    segment = response.json()
    assert segment["time_based"] is True

    async def members():
        async with runtime.engine.connect() as conn:
            return (
                await conn.execute(
                    sa.text("SELECT count(*) FROM segment_memberships WHERE segment_id = :id"), {"id": segment["id"]}
                )
            ).scalar_one()

    assert await members() == 0
    assert await recompute_due(runtime.engine, 0, now + timedelta(days=20)) == [segment["id"]]
    assert await members() == 0
    await recompute_due(runtime.engine, 0, now + timedelta(days=31))
    assert await members() == 1
