"""Membership in Segment stays true: from a real rule, through the sender, to the fake Segment.

Segment holds what we last delivered. A user (or account) who leaves the outbound
filter hears it once; a segment left, renamed or deleted is sent as `false`; a merge
ends the memberships of the merged-away profile that the survivor does not keep.
"""

import sqlalchemy as sa

from connector.core.models import SegmentTransition
from tests.support.api import create_segment, post_batch_accepted
from tests.support.app import admin_auth, drain
from tests.support.fake_segment import configure, of_type, sent_after, user_id_of

PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def test_a_user_who_leaves_the_filter_hears_it_once_then_nothing_until_back(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["Pro Users"],
        synchronized_properties=["plan"],
        segment_membership_traits=True,
        entered_exited_events=True,
    )
    joined = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}}
    )
    [identify] = of_type(joined, "identify")
    assert identify["traits"] == {"plan": "pro", "hull_segments": ["Pro Users"], "pro_users": True}
    assert [m["properties"]["segment_name"] for m in of_type(joined, "track", "Segment Entered")] == ["Pro Users"]

    left = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "free"}}
    )
    [farewell] = of_type(left, "identify")
    assert farewell["userId"] == "u-1"
    assert farewell["traits"] == {"plan": "free", "hull_segments": [], "pro_users": False}
    assert [m["properties"]["segment_name"] for m in of_type(left, "track", "Segment Exited")] == ["Pro Users"]

    outside = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "team", "seats": 3}}
    )
    assert outside == []

    back = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}}
    )
    [identify] = of_type(back, "identify")
    assert identify["traits"] == {"plan": "pro", "hull_segments": ["Pro Users"], "pro_users": True}


async def test_a_user_never_sent_while_in_the_filter_gets_no_farewell(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, synchronized_segments=["Pro Users"], segment_membership_traits=True)
    await post_batch_accepted(client, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    await drain(runtime)
    # Left again before the sender ran: Segment never heard of the membership.
    assert (
        await sent_after(
            client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "free"}}
        )
        == []
    )


async def synchronize_big_accounts(client, runtime, segment_api):
    """Every user, and the accounts of 100 employees or more (their employees sent), are synchronized."""
    await create_segment(
        client, "Big Accounts", {"attribute": "traits.employees", "op": "gte", "value": 100}, entity="account"
    )
    await configure(
        runtime,
        segment_api,
        handle_accounts=True,
        synchronized_segments=["ALL"],
        synchronized_account_segments=["Big Accounts"],
        synchronized_account_properties=["employees"],
    )


async def test_an_account_that_leaves_the_filter_gets_one_last_group_call(client, runtime, segment_api):
    await synchronize_big_accounts(client, runtime, segment_api)
    joined = await sent_after(
        client, runtime, segment_api, {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"employees": 200}}
    )
    [group] = of_type(joined, "group")
    assert group["traits"] == {"employees": 200, "hull_segments": ["Big Accounts"]}

    left = await sent_after(
        client, runtime, segment_api, {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"employees": 10}}
    )
    [farewell] = of_type(left, "group")
    assert farewell["groupId"] == "g-1" and farewell["traits"] == {"employees": 10, "hull_segments": []}

    outside = await sent_after(
        client, runtime, segment_api, {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"employees": 20}}
    )
    assert of_type(outside, "group") == []


async def test_a_user_who_moves_to_an_account_outside_the_filter_gets_no_group_call_naming_it(
    client, runtime, segment_api
):
    await synchronize_big_accounts(client, runtime, segment_api)
    big = {"type": "group", "userId": "u-1", "groupId": "big-co", "traits": {"employees": 200}}
    [group] = of_type(await sent_after(client, runtime, segment_api, big), "group")
    assert group["groupId"] == "big-co"
    small = {"type": "group", "userId": "u-1", "groupId": "small-co", "traits": {"employees": 5}}
    assert of_type(await sent_after(client, runtime, segment_api, small), "group") == []
    # Once the new account enters the filter, it is sent as usual.
    grown = {**small, "traits": {"employees": 150}}
    [group] = of_type(await sent_after(client, runtime, segment_api, grown), "group")
    assert group["groupId"] == "small-co" and group["traits"] == {"employees": 150, "hull_segments": ["Big Accounts"]}


async def test_a_renamed_segment_is_false_under_its_old_name_and_true_under_the_new(client, runtime, segment_api):
    segment_id = await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, synchronized_segments=["ALL"], segment_membership_traits=True)
    await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    renamed = await client.put(f"/api/segments/{segment_id}", headers=admin_auth(), json={"name": "Professionals"})
    assert renamed.status_code == 200, renamed.text
    [identify] = of_type(await sent_after(client, runtime, segment_api), "identify")
    assert identify["traits"] == {"hull_segments": ["Professionals"], "pro_users": False, "professionals": True}
    assert await sent_after(client, runtime, segment_api) == []


async def test_a_deleted_segment_is_sent_as_false_and_segment_exited(client, runtime, segment_api):
    segment_id = await create_segment(client, "Pro Users", PRO)
    await configure(
        runtime, segment_api, synchronized_segments=["ALL"], segment_membership_traits=True, entered_exited_events=True
    )
    await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    assert (await client.delete(f"/api/segments/{segment_id}", headers=admin_auth())).status_code == 204
    sent = await sent_after(client, runtime, segment_api)
    [identify] = of_type(sent, "identify")
    assert identify["traits"] == {"hull_segments": [], "pro_users": False}
    [exited] = of_type(sent, "track", "Segment Exited")
    assert exited["userId"] == "u-1" and exited["properties"]["segment_name"] == "Pro Users"


async def test_a_merge_ends_the_memberships_the_survivor_does_not_keep(client, runtime, segment_api):
    await create_segment(client, "Anonymous Visitors", {"attribute": "traits.email", "op": "not_exists"})
    await create_segment(client, "Saw Pricing", {"event": "Viewed Pricing"})
    await configure(
        runtime, segment_api, synchronized_segments=["ALL"], segment_membership_traits=True, entered_exited_events=True
    )
    first = await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}},
        {"type": "track", "anonymousId": "a-1", "event": "Viewed Pricing"},
    )
    entered = {
        (m.get("anonymousId"), m["properties"]["segment_name"]) for m in of_type(first, "track", "Segment Entered")
    }
    assert entered == {("a-1", "Anonymous Visitors"), ("a-1", "Saw Pricing")}

    merged = await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "anonymousId": "a-1"})
    # The survivor has an email: the visitor's anonymous membership ends; its event keeps it in Saw Pricing.
    [exited] = of_type(merged, "track", "Segment Exited")
    assert exited["userId"] == "u-1" and exited["properties"]["segment_name"] == "Anonymous Visitors"
    assert of_type(merged, "track", "Segment Entered") == []
    [identify] = of_type(merged, "identify")
    assert identify["userId"] == "u-1"
    assert identify["traits"] == {
        "email": "ada@example.com",
        "hull_segments": ["Saw Pricing"],
        "anonymous_visitors": False,
        "saw_pricing": True,
    }
    survivor = await user_id_of(runtime, "u-1")
    table = SegmentTransition.__table__
    async with runtime.engine.connect() as conn:
        exits = (
            (
                await conn.execute(
                    sa.select(table.c.segment_name).where(table.c.entity_id == survivor, table.c.transition == "exited")
                )
            )
            .scalars()
            .all()
        )
    assert exits == ["Anonymous Visitors"]


async def test_renaming_a_synchronized_segment_keeps_its_members_in_the_filter(client, runtime, segment_api):
    segment_id = await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, synchronized_segments=["Pro Users", "Other"], segment_membership_traits=True)
    await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    renamed = await client.put(f"/api/segments/{segment_id}", headers=admin_auth(), json={"name": "Professionals"})
    assert renamed.status_code == 200, renamed.text
    settings = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    assert settings["synchronized_segments"] == ["Professionals", "Other"]
    [identify] = of_type(await sent_after(client, runtime, segment_api), "identify")
    assert identify["traits"] == {"hull_segments": ["Professionals"], "pro_users": False, "professionals": True}
    # Still in the filter: the next change is sent as usual.
    later = await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro", "email": "ada@example.com"}},
    )
    [identify] = of_type(later, "identify")
    assert identify["traits"]["email"] == "ada@example.com" and identify["traits"]["hull_segments"] == ["Professionals"]


async def test_a_rename_saved_with_its_rule_keeps_the_members_in_the_filter(client, runtime, segment_api):
    segment_id = await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, synchronized_segments=["Pro Users"], synchronized_properties=["plan"])
    await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    # The dashboard's editor saves name and rule together.
    rule = {"attribute": "traits.plan", "op": "in", "value": ["pro", "team"]}
    saved = await client.put(
        f"/api/segments/{segment_id}", headers=admin_auth(), json={"name": "Professionals", "rule": rule}
    )
    assert saved.status_code == 200, saved.text
    settings = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    assert settings["synchronized_segments"] == ["Professionals"]
    [identify] = of_type(await sent_after(client, runtime, segment_api), "identify")
    assert identify["traits"] == {"plan": "pro", "hull_segments": ["Professionals"]}
    later = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "team"}}
    )
    [identify] = of_type(later, "identify")
    assert identify["traits"] == {"plan": "team", "hull_segments": ["Professionals"]}


async def test_a_deleted_synchronized_segment_leaves_the_settings_after_its_exits_are_sent(
    client, runtime, segment_api
):
    segment_id = await create_segment(client, "Pro Users", PRO)
    await create_segment(client, "Everyone", {"attribute": "traits.plan", "op": "exists"})
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["Pro Users", "Everyone"],
        synchronized_account_segments=["Pro Users"],
        segment_membership_traits=True,
        entered_exited_events=True,
    )
    await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    assert (await client.delete(f"/api/segments/{segment_id}", headers=admin_auth())).status_code == 204
    settings = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    assert settings["synchronized_segments"] == ["Everyone"] and settings["synchronized_account_segments"] == []
    sent = await sent_after(client, runtime, segment_api)
    [identify] = of_type(sent, "identify")
    assert identify["traits"] == {"hull_segments": ["Everyone"], "pro_users": False, "everyone": True}
    assert [m["properties"]["segment_name"] for m in of_type(sent, "track", "Segment Exited")] == ["Pro Users"]


async def test_segment_entered_and_exited_are_sent_only_for_the_synchronized_segments(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await create_segment(client, "Newsletter", {"attribute": "traits.newsletter", "op": "eq", "value": True})
    await configure(runtime, segment_api, synchronized_segments=["Pro Users"], entered_exited_events=True)
    joined = await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "u-1", "traits": {"plan": "pro", "newsletter": True}},
    )
    # In the filter through Pro Users, a member of Newsletter too: only Pro Users' entry is announced.
    assert [m["properties"]["segment_name"] for m in of_type(joined, "track", "Segment Entered")] == ["Pro Users"]
    [identify] = of_type(joined, "identify")
    assert identify["traits"]["hull_segments"] == ["Newsletter", "Pro Users"]
    left = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"newsletter": False}}
    )
    assert of_type(left, "track") == []


async def test_membership_traits_keep_every_script_and_never_share_or_empty_a_name(client, runtime, segment_api):
    names = ["Clients Fidèles", "Käufer", "Клиенты", "Акция x", "Скидка x", "🔥", "Pro Users", "pro-users"]
    ids = [await create_segment(client, name, {"attribute": "traits.vip", "op": "eq", "value": True}) for name in names]
    await configure(runtime, segment_api, synchronized_segments=["ALL"], segment_membership_traits=True)
    joined = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"vip": True}}
    )
    [identify] = of_type(joined, "identify")
    # 🔥: sha256("🔥")[:8]; pro-users, the younger of the two giving pro_users: sha256("pro-users")[:8]
    expected = {
        "clients_fidèles": True,
        "käufer": True,
        "клиенты": True,
        "акция_x": True,
        "скидка_x": True,
        "segment_ed8d8305": True,
        "pro_users": True,
        "pro_users_c09da86a": True,
    }
    assert identify["traits"] == {"hull_segments": sorted(names), **expected}
    # Deleted, a segment is sent as false under the trait it had.
    assert (await client.delete(f"/api/segments/{ids[1]}", headers=admin_auth())).status_code == 204
    [identify] = of_type(await sent_after(client, runtime, segment_api), "identify")
    assert identify["traits"]["käufer"] is False and identify["traits"]["клиенты"] is True
