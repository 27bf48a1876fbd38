"""Incoming Engage audiences: entered and exited through identify traits and through track events."""

from datetime import timedelta

import sqlalchemy as sa

from connector.core.kinds import Entity
from connector.core.models import utcnow
from connector.core.spec import format_timestamp
from connector.profile.audiences import member_condition
from connector.profile.computed import computed_attributes
from tests.support.api import post_call
from tests.support.app import admin_auth, drain


def personas(key):
    return {
        "personas": {
            "computation_class": "audience",
            "computation_key": key,
            "computation_id": "aud_1",
            "space_id": "spa_1",
            "namespace": "spa_1",
        }
    }


async def audiences_of(client, user_id):
    found = await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())
    response = await client.get(f"/api/users/{found.json()['id']}/audiences", headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()["audiences"]


async def test_engage_identify_enters_and_exits_an_audience(client, runtime):
    entered, exited = utcnow() - timedelta(hours=2), utcnow() - timedelta(hours=1)
    await post_call(
        client,
        "identify",
        userId="ada",
        traits={"first_time_shopper": True},
        context=personas("first_time_shopper"),
        timestamp=format_timestamp(entered),
    )
    await drain(runtime)
    assert await audiences_of(client, "ada") == {
        "first_time_shopper": {"member": True, "entered_at": format_timestamp(entered), "exited_at": None}
    }

    await post_call(
        client,
        "identify",
        userId="ada",
        traits={"first_time_shopper": False},
        context=personas("first_time_shopper"),
        timestamp=format_timestamp(exited),
    )
    await drain(runtime)
    assert await audiences_of(client, "ada") == {
        "first_time_shopper": {
            "member": False,
            "entered_at": format_timestamp(entered),
            "exited_at": format_timestamp(exited),
        }
    }


async def test_a_boolean_trait_counts_only_when_named_like_a_known_audience(client, runtime):
    await post_call(client, "identify", userId="ada", traits={"vip": True}, context=personas("vip"))
    await drain(runtime)  # `vip` is known once ada's message is applied (bob's is in another journal partition)
    # no personas context: `vip` is a known audience key, `newsletter` is just a trait
    await post_call(client, "identify", userId="bob", traits={"vip": True, "newsletter": True})
    await post_call(client, "identify", userId="eve", traits={"newsletter": True, "vip": "yes"})
    await drain(runtime)
    assert set(await audiences_of(client, "bob")) == {"vip"} and (await audiences_of(client, "bob"))["vip"]["member"]
    assert await audiences_of(client, "eve") == {}
    # the trait itself is still stored like any other
    bob = (await client.get("/api/users", params={"user_id": "bob"}, headers=admin_auth())).json()
    assert bob["traits"] == {"vip": True, "newsletter": True}


async def test_audience_entered_and_exited_track_events(client, runtime):
    entered, exited = utcnow() - timedelta(minutes=10), utcnow() - timedelta(minutes=5)
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Entered",
        timestamp=format_timestamp(entered),
        properties={"audience_key": "churn_risk"},
    )
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Entered",
        timestamp=format_timestamp(entered),
        properties={},
        context=personas("power_users"),
    )
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Exited",
        timestamp=format_timestamp(exited),
        properties={"audience_key": "churn_risk"},
    )
    await drain(runtime)
    found = await audiences_of(client, "ada")
    assert {key: value["member"] for key, value in found.items()} == {"churn_risk": False, "power_users": True}
    assert found["churn_risk"]["exited_at"] == format_timestamp(exited)


async def test_out_of_order_delivery_keeps_the_latest_state(client, runtime):
    entered, exited, again = (utcnow() - timedelta(hours=h) for h in (3, 2, 1))
    # delivered newest first: the re-entry, then the exit, then the first entry
    await post_call(
        client,
        "identify",
        userId="ada",
        traits={"vip": True},
        context=personas("vip"),
        timestamp=format_timestamp(again),
    )
    await post_call(
        client,
        "identify",
        userId="ada",
        traits={"vip": False},
        context=personas("vip"),
        timestamp=format_timestamp(exited),
    )
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Entered",
        properties={"audience_key": "vip"},
        timestamp=format_timestamp(entered),
    )
    # an old exit from another audience, delivered twice
    for _ in range(2):
        await post_call(
            client,
            "track",
            userId="ada",
            event="Audience Exited",
            properties={"audience_key": "trial"},
            timestamp=format_timestamp(entered),
        )
    await drain(runtime)
    found = await audiences_of(client, "ada")
    assert found["vip"] == {
        "member": True,
        "entered_at": format_timestamp(again),
        "exited_at": format_timestamp(exited),
    }
    assert found["trial"] == {"member": False, "entered_at": None, "exited_at": format_timestamp(entered)}


async def test_a_merge_keeps_both_sides_audiences_latest_first(client, runtime):
    early, late = utcnow() - timedelta(hours=2), utcnow() - timedelta(hours=1)
    await post_call(
        client,
        "identify",
        anonymousId="anon-1",
        traits={"vip": True},
        context=personas("vip"),
        timestamp=format_timestamp(late),
    )
    await post_call(
        client,
        "identify",
        anonymousId="anon-1",
        traits={"trial": True},
        context=personas("trial"),
        timestamp=format_timestamp(early),
    )
    await post_call(
        client,
        "identify",
        userId="ada",
        traits={"vip": False},
        context=personas("vip"),
        timestamp=format_timestamp(early),
    )
    await drain(runtime)
    await post_call(client, "identify", userId="ada", anonymousId="anon-1")
    await drain(runtime)

    found = await audiences_of(client, "ada")
    assert {key: value["member"] for key, value in found.items()} == {"vip": True, "trial": True}
    user = (await client.get("/api/users", params={"user_id": "ada"}, headers=admin_auth())).json()["id"]
    async with runtime.engine.connect() as conn:
        attributes = await computed_attributes(conn, Entity.USER, user)
    assert attributes["audiences"] == {"trial": True, "vip": True}
    assert attributes["usage"]["events_30d"] == 0 and attributes["usage"]["trend"] == [0] * 12


async def test_the_sql_membership_test_agrees_with_the_recorded_state(client, runtime):
    entered, exited = utcnow() - timedelta(hours=2), utcnow() - timedelta(hours=1)
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Entered",
        properties={"audience_key": "vip"},
        timestamp=format_timestamp(entered),
    )
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Entered",
        properties={"audience_key": "trial"},
        timestamp=format_timestamp(entered),
    )
    await post_call(
        client,
        "track",
        userId="ada",
        event="Audience Exited",
        properties={"audience_key": "trial"},
        timestamp=format_timestamp(exited),
    )
    await drain(runtime)
    user = (await client.get("/api/users", params={"user_id": "ada"}, headers=admin_auth())).json()["id"]
    async with runtime.engine.connect() as conn:
        found = {key: await conn.scalar(sa.select(member_condition(user, key))) for key in ("vip", "trial", "other")}
    assert {key: bool(value) for key, value in found.items()} == {"vip": True, "trial": False, "other": False}


async def test_unknown_user_has_no_audiences_endpoint(client):
    assert (await client.get("/api/users/424242/audiences", headers=admin_auth())).status_code == 404
