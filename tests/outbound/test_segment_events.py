"""Segment events (Hightouch's generic track): added / changed / removed per segment, from real rules.

Members are decided by the segment engine from real messages; the events reach the fake
Segment through the real transport. No synchronized segment is chosen here: segment events
follow the segment their entry names, whatever the outbound filter.
"""

import re
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from connector import __version__
from connector.core.kinds import OutboxKind
from connector.core.models import DeliveryState, SegmentTransition
from connector.flow import outbox
from connector.outbound import resync
from tests.support.api import create_segment, post_batch_accepted
from tests.support.app import admin_auth, drain
from tests.support.fake_segment import configure, send_all, sent_after, user_id_of

transitions = SegmentTransition.__table__
delivery_state = DeliveryState.__table__
PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}
BIG = {"attribute": "traits.employees", "op": "gte", "value": 100}
PRO_EVENTS = {
    "segment": "Pro Users",
    "added": "Pro Started",
    "changed": "Pro Updated",
    "removed": "Pro Ended",
    "properties": ["email", {"from": "traits.seats", "to": "seat_count"}],
    "timestamp": "traits.upgraded_at",
}
STAMP = {
    "integrations": {"Webhooks": False},
    "context": {"integration": {"name": "hull-segment-connector", "version": __version__}},
}


def identify(plan, seats=3, **traits):
    return {
        "type": "identify",
        "userId": "u-1",
        "traits": {"email": "ada@example.com", "plan": plan, "seats": seats, **traits},
    }


def summary(messages):
    return [(message["event"], message["userId"], message["properties"]) for message in messages]


async def test_added_changed_removed_carry_their_names_properties_timestamps_and_ids(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    upgraded = {"upgraded_at": "2024-03-01T09:00:00+01:00"}

    [sent] = await sent_after(client, runtime, segment_api, identify("pro", **upgraded))
    added = dict(sent)
    assert re.fullmatch(r"hsc-added-[0-9a-f]{32}", added.pop("messageId"))
    assert added == {
        "type": "track",
        "userId": "u-1",
        "event": "Pro Started",
        "timestamp": "2024-03-01T08:00:00.000000Z",
        "properties": {"email": "ada@example.com", "seat_count": 3},
        **STAMP,
    }

    # Neither a trait that is not mapped nor a message that changes nothing is a change.
    assert await sent_after(client, runtime, segment_api, identify("pro", theme="dark")) == []
    assert await sent_after(client, runtime, segment_api, identify("pro")) == []

    [changed] = await sent_after(client, runtime, segment_api, identify("pro", seats=5))
    assert summary([changed]) == [("Pro Updated", "u-1", {"email": "ada@example.com", "seat_count": 5})]
    assert changed["timestamp"] == "2024-03-01T08:00:00.000000Z"
    assert re.fullmatch(r"hsc-changed-[0-9a-f]{32}", changed["messageId"])
    assert await sent_after(client, runtime, segment_api, identify("pro", seats=5)) == []  # once per change

    [removed] = await sent_after(client, runtime, segment_api, identify("free", seats=5))
    assert summary([removed]) == [("Pro Ended", "u-1", {"email": "ada@example.com", "seat_count": 5})]
    assert re.fullmatch(r"hsc-removed-[0-9a-f]{32}", removed["messageId"])
    assert removed["integrations"] == STAMP["integrations"] and removed["context"] == STAMP["context"]

    # Outside the segment, changes are nobody's business.
    assert await sent_after(client, runtime, segment_api, identify("free", seats=9)) == []
    assert len(set(segment_api.message_ids())) == 3


async def test_without_a_timestamp_attribute_the_event_carries_the_time_of_the_change(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[{**PRO_EVENTS, "timestamp": "traits.not_a_date"}])
    before = datetime.now(UTC)
    [added] = await sent_after(client, runtime, segment_api, identify("pro", not_a_date="soon"))
    [changed] = await sent_after(client, runtime, segment_api, identify("pro", seats=4, not_a_date="soon"))
    after = datetime.now(UTC)
    for message in (added, changed):
        sent_at = datetime.fromisoformat(message["timestamp"].replace("Z", "+00:00"))
        assert before <= sent_at <= after, message
    assert changed["timestamp"] > added["timestamp"]


async def test_enter_leave_enter_are_three_events_and_a_resend_repeats_their_ids(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    for plan in ("pro", "free", "pro"):
        await sent_after(client, runtime, segment_api, identify(plan))
    assert [message["event"] for message in segment_api.messages] == ["Pro Started", "Pro Ended", "Pro Started"]
    first = segment_api.message_ids()
    assert len(set(first)) == 3

    # The same transitions sent again (a crash between send and acknowledgement): the same ids, for Segment to drop.
    async with runtime.engine.begin() as conn:
        ids = (await conn.execute(sa.select(transitions.c.id).order_by(transitions.c.id))).scalars().all()
        await outbox.enqueue(conn, OutboxKind.TRANSITION, ids)
    await send_all(runtime)
    assert segment_api.message_ids()[3:] == first


@pytest.mark.parametrize("send_initial_results", [False, True])
async def test_initial_members_get_added_only_with_send_initial_results(
    client, runtime, segment_api, send_initial_results
):
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS], send_initial_results=send_initial_results)
    await sent_after(client, runtime, segment_api, identify("pro"))
    assert segment_api.messages == []

    await create_segment(client, "Pro Users", PRO)
    initial = await sent_after(client, runtime, segment_api)
    expected = [("Pro Started", "u-1", {"email": "ada@example.com", "seat_count": 3})]
    assert summary(initial) == (expected if send_initial_results else [])

    # Either way the member is followed from there: a mapped change is a change, an unmapped one is not.
    assert await sent_after(client, runtime, segment_api, identify("pro", theme="dark")) == []
    changed = await sent_after(client, runtime, segment_api, identify("pro", seats=4))
    assert summary(changed) == [("Pro Updated", "u-1", {"email": "ada@example.com", "seat_count": 4})]


async def test_a_member_from_before_the_entry_gets_changed_for_its_first_mapped_change(client, runtime, segment_api):
    await create_segment(client, "Seat holders", PRO)
    await configure(runtime, segment_api)
    await sent_after(client, runtime, segment_api, identify("pro", seats=3))
    entry = {
        "segment": "Seat holders",
        "changed": "Seats Changed",
        "properties": [{"from": "traits.seats", "to": "seats"}],
    }
    saved = await client.put("/api/settings", headers=admin_auth(), json={"segment_events": [entry]})
    assert saved.status_code == 200, saved.text

    # Measured from what the member held when the entry was saved (3 seats), not taken silently as the baseline.
    [changed] = await sent_after(client, runtime, segment_api, identify("pro", seats=5))
    assert summary([changed]) == [("Seats Changed", "u-1", {"seats": 5})]
    assert await sent_after(client, runtime, segment_api, identify("pro", seats=5, theme="dark")) == []
    [again] = await sent_after(client, runtime, segment_api, identify("pro", seats=7))
    assert summary([again]) == [("Seats Changed", "u-1", {"seats": 7})]

    # Saving the settings again (the entry unchanged) moves nothing: the next change is still measured from 7.
    assert (await client.put("/api/settings", headers=admin_auth(), json={"send_events": []})).status_code == 200
    [third] = await sent_after(client, runtime, segment_api, identify("pro", seats=8))
    assert summary([third]) == [("Seats Changed", "u-1", {"seats": 8})]


async def test_a_member_of_an_account_segment_from_before_the_entry_gets_changed_for_its_first_change(
    client, runtime, segment_api
):
    await create_segment(client, "Big Accounts", BIG, entity="account")
    await configure(runtime, segment_api, handle_accounts=True)
    group = {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme", "employees": 200}}
    await sent_after(client, runtime, segment_api, group)
    entry = {"segment": "Big Accounts", "changed": "Company Changed", "properties": ["name", "employees"]}
    assert (
        await client.put("/api/settings", headers=admin_auth(), json={"segment_events": [entry]})
    ).status_code == 200
    [changed] = await sent_after(client, runtime, segment_api, {**group, "traits": {"name": "Acme", "employees": 300}})
    assert summary([changed]) == [("Company Changed", "u-1", {"name": "Acme", "employees": 300})]


async def test_account_segment_events_go_to_each_user_of_the_account_with_its_properties(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        handle_accounts=True,
        segment_events=[
            {
                "segment": "Big Accounts",
                "added": "Account Became Big",
                "changed": "Big Account Changed",
                "removed": "Account Became Small",
                "properties": [{"from": "traits.name", "to": "company"}, {"from": "domain", "to": "website"}],
            }
        ],
    )
    await create_segment(client, "Big Accounts", BIG, entity="account")
    group: dict[str, Any] = {"type": "group", "groupId": "g-1", "traits": {"name": "Acme", "domain": "acme.test"}}
    added = await sent_after(
        client,
        runtime,
        segment_api,
        {**group, "userId": "u-1"},
        {**group, "userId": "u-2", "traits": {**group["traits"], "employees": 120}},
    )
    properties = {"company": "Acme", "website": "acme.test"}
    assert sorted(summary(added)) == [
        ("Account Became Big", "u-1", properties),
        ("Account Became Big", "u-2", properties),
    ]
    assert len({message["messageId"] for message in added}) == 2

    renamed = await sent_after(
        client, runtime, segment_api, {**group, "userId": "u-1", "traits": {"name": "Acme Inc", "employees": 150}}
    )
    assert sorted(summary(renamed)) == [
        ("Big Account Changed", "u-1", {**properties, "company": "Acme Inc"}),
        ("Big Account Changed", "u-2", {**properties, "company": "Acme Inc"}),
    ]
    assert (
        await sent_after(client, runtime, segment_api, {**group, "userId": "u-2", "traits": {"employees": 160}}) == []
    )

    small = await sent_after(client, runtime, segment_api, {**group, "userId": "u-2", "traits": {"employees": 12}})
    assert sorted(summary(small)) == [
        ("Account Became Small", "u-1", {**properties, "company": "Acme Inc"}),
        ("Account Became Small", "u-2", {**properties, "company": "Acme Inc"}),
    ]


BIG_EVENTS = {
    "segment": "Big Accounts",
    "added": "Joined Big Account",
    "changed": "Big Account Changed",
    "removed": "Left Big Account",
    "properties": [{"from": "traits.name", "to": "company"}],
}


async def test_a_user_who_joins_a_member_account_gets_added_and_removed_when_it_leaves(client, runtime, segment_api):
    await create_segment(client, "Big Accounts", BIG, entity="account")
    await configure(runtime, segment_api, handle_accounts=True, segment_events=[BIG_EVENTS])
    acme = {"type": "group", "groupId": "acme", "traits": {"name": "Acme", "employees": 200}}
    [first] = await sent_after(client, runtime, segment_api, {**acme, "userId": "u-1"})
    assert summary([first]) == [("Joined Big Account", "u-1", {"company": "Acme"})]

    # u-2 is linked after the account entered: it is announced by its own link, once.
    joined = await sent_after(client, runtime, segment_api, {"type": "group", "groupId": "acme", "userId": "u-2"})
    assert summary(joined) == [("Joined Big Account", "u-2", {"company": "Acme"})]
    assert first["messageId"] != joined[0]["messageId"]
    assert (
        await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-2", "traits": {"x": 1}}) == []
    )

    left = await sent_after(client, runtime, segment_api, {**acme, "userId": "u-1", "traits": {"employees": 3}})
    assert sorted(summary(left)) == [
        ("Left Big Account", "u-1", {"company": "Acme"}),
        ("Left Big Account", "u-2", {"company": "Acme"}),
    ]


async def test_a_user_who_moves_to_another_account_leaves_the_old_one_s_segments(client, runtime, segment_api):
    await create_segment(client, "Big Accounts", BIG, entity="account")
    await configure(runtime, segment_api, handle_accounts=True, segment_events=[BIG_EVENTS])
    acme = {"type": "group", "userId": "u-1", "groupId": "acme", "traits": {"name": "Acme", "employees": 200}}
    globex = {"type": "group", "userId": "u-2", "groupId": "globex", "traits": {"name": "Globex", "employees": 900}}
    await sent_after(client, runtime, segment_api, acme, globex)

    # From one member account to another: still a member, with other properties.
    moved = await sent_after(client, runtime, segment_api, {"type": "group", "userId": "u-1", "groupId": "globex"})
    assert summary(moved) == [("Big Account Changed", "u-1", {"company": "Globex"})]

    # To an account outside the segment: removed, with the properties of the account it left.
    small = {"type": "group", "userId": "u-1", "groupId": "tiny", "traits": {"name": "Tiny", "employees": 2}}
    left = await sent_after(client, runtime, segment_api, small)
    assert summary(left) == [("Left Big Account", "u-1", {"company": "Globex"})]
    assert await sent_after(client, runtime, segment_api, {**small, "traits": {"employees": 3}}) == []
    # Globex leaving later concerns only the users still linked to it.
    gone = await sent_after(client, runtime, segment_api, {**globex, "traits": {"employees": 1}})
    assert summary(gone) == [("Left Big Account", "u-2", {"company": "Globex"})]


async def test_segment_events_and_entered_exited_events_are_sent_side_by_side(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(
        runtime,
        segment_api,
        entered_exited_events=True,
        synchronized_segments=["Pro Users"],
        synchronized_properties=[{"from": "traits.seats", "to": "seat_count"}],
        segment_events=[{"segment": "Pro Users", "added": "Pro Started"}],
    )
    sent = await sent_after(client, runtime, segment_api, identify("pro"))
    assert sorted((message["type"], message.get("event")) for message in sent) == [
        ("identify", None),
        ("track", "Pro Started"),
        ("track", "Segment Entered"),
    ]
    [started] = [message for message in sent if message.get("event") == "Pro Started"]
    assert started["properties"] == {}


async def test_an_erased_user_leaves_no_segment_event_state(client, runtime, segment_api):
    segment = await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    await sent_after(client, runtime, segment_api, identify("pro"))
    user = await user_id_of(runtime, "u-1")
    async with runtime.engine.connect() as conn:
        keys = (await conn.execute(sa.select(delivery_state.c.key))).scalars().all()
    assert keys == [f"segment_event:{user}:{segment}"]

    response = await client.delete("/api/users", headers=admin_auth(), params={"user_id": "u-1"})
    assert response.status_code == 200, response.text
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(sa.select(delivery_state.c.key))).scalars().all() == []


@pytest.mark.parametrize("known_plan", ["pro", "free"])  # the survivor with a record of its own, or without
async def test_a_merged_visitor_s_segment_event_record_goes_to_the_survivor_and_an_erasure_leaves_none(
    client, runtime, segment_api, known_plan
):
    segment = await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    await sent_after(client, runtime, segment_api, identify(known_plan))
    visitor = {"type": "identify", "anonymousId": "a-9", "traits": {"email": "ada@example.com", "plan": "pro"}}
    [added] = await sent_after(client, runtime, segment_api, visitor)
    assert (added["event"], added["anonymousId"]) == ("Pro Started", "a-9")

    # The visitor logs in: its profile is merged into u-1's, whose plan is now the visitor's newer "pro".
    merged = await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "anonymousId": "a-9"})
    # Without a record of its own, u-1 takes the visitor's: Segment last heard of this member without seats.
    updated = [("Pro Updated", "u-1", {"email": "ada@example.com", "seat_count": 3})]
    assert summary(merged) == ([] if known_plan == "pro" else updated)
    user = await user_id_of(runtime, "u-1")
    async with runtime.engine.connect() as conn:
        keys = (
            (await conn.execute(sa.select(delivery_state.c.key).where(delivery_state.c.key.like("segment_event:%"))))
            .scalars()
            .all()
        )
    assert keys == [f"segment_event:{user}:{segment}"]

    response = await client.delete("/api/users", headers=admin_auth(), params={"user_id": "u-1"})
    assert response.status_code == 200, response.text
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(sa.select(delivery_state.c.key))).scalars().all() == []


async def test_leaving_and_coming_back_between_two_sends_is_removed_then_added_not_changed(
    client, runtime, segment_api
):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    await sent_after(client, runtime, segment_api, identify("pro"))

    await post_batch_accepted(client, identify("free"))
    await drain(runtime)
    back = await sent_after(client, runtime, segment_api, identify("pro", seats=8))
    assert summary(back) == [
        ("Pro Ended", "u-1", {"email": "ada@example.com", "seat_count": 8}),
        ("Pro Started", "u-1", {"email": "ada@example.com", "seat_count": 8}),
    ]
    # Followed from the new entry on: the payload it was announced with is the one changes are measured from.
    assert await sent_after(client, runtime, segment_api, identify("pro", seats=8)) == []
    [changed] = await sent_after(client, runtime, segment_api, identify("pro", seats=9))
    assert changed["event"] == "Pro Updated"


@pytest.mark.parametrize("announced_before", [False, True])  # new to the segment, or a member Segment heard of
async def test_entering_and_leaving_before_the_sender_runs_sends_both_and_keeps_no_record(
    client, runtime, segment_api, announced_before
):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    properties = {"email": "ada@example.com", "seat_count": 3}
    expected = [("Pro Started", "u-1", properties), ("Pro Ended", "u-1", properties)]
    if announced_before:
        assert summary(await sent_after(client, runtime, segment_api, identify("pro"))) == expected[:1]
        await post_batch_accepted(client, identify("free"))
        await drain(runtime)  # left
        expected = expected[1:] + expected
    await post_batch_accepted(client, identify("pro"))
    await drain(runtime)  # entered
    await post_batch_accepted(client, identify("free"))
    await drain(runtime)  # and left, all before the sender ran

    assert summary(await sent_after(client, runtime, segment_api)) == expected
    async with runtime.engine.connect() as conn:
        keys = (await conn.execute(sa.select(delivery_state.c.key))).scalars().all()
    assert [key for key in keys if key.startswith("segment_event:")] == []
    # Not a member, so nothing to follow: a later change of a mapped trait sends nothing.
    assert await sent_after(client, runtime, segment_api, identify("free", seats=7)) == []


async def test_a_deleted_segment_sends_removed_to_its_members_and_leaves_the_settings(client, runtime, segment_api):
    segment = await create_segment(client, "Pro Users", PRO)
    other = {**PRO_EVENTS, "segment": "Other", "added": "Other Started"}
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS, other])
    await sent_after(client, runtime, segment_api, identify("pro"))
    assert (await client.delete(f"/api/segments/{segment}", headers=admin_auth())).status_code == 204
    settings = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    assert [entry["segment"] for entry in settings["segment_events"]] == ["Other"]
    # Sent after the entry left the settings: as the settings said when the segment was deleted.
    removed = await sent_after(client, runtime, segment_api)
    assert summary(removed) == [("Pro Ended", "u-1", {"email": "ada@example.com", "seat_count": 3})]


async def test_a_renamed_segment_keeps_its_segment_events(client, runtime, segment_api):
    segment = await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    await sent_after(client, runtime, segment_api, identify("pro"))
    renamed = await client.put(f"/api/segments/{segment}", headers=admin_auth(), json={"name": "Professionals"})
    assert renamed.status_code == 200, renamed.text
    settings = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    assert [entry["segment"] for entry in settings["segment_events"]] == ["Professionals"]
    assert settings["segment_events"][0]["changed"] == "Pro Updated"

    changed = await sent_after(client, runtime, segment_api, identify("pro", seats=5))
    assert summary(changed) == [("Pro Updated", "u-1", {"email": "ada@example.com", "seat_count": 5})]
    assert (await client.delete(f"/api/segments/{segment}", headers=admin_auth())).status_code == 204
    removed = await sent_after(client, runtime, segment_api)
    assert summary(removed) == [("Pro Ended", "u-1", {"email": "ada@example.com", "seat_count": 5})]


async def test_resync_added_repeats_the_message_id_of_the_added_already_sent(client, runtime, segment_api):
    await create_segment(client, "Pro Users", PRO)
    await configure(runtime, segment_api, segment_events=[PRO_EVENTS])
    [added] = await sent_after(client, runtime, segment_api, identify("pro"))
    settings = await runtime.settings.current()
    assert await resync.resync_added(runtime.engine, settings) == 1
    [again] = await sent_after(client, runtime, segment_api)
    assert (again["event"], again["messageId"], again["properties"]) == (
        "Pro Started",
        added["messageId"],
        added["properties"],
    )


async def test_each_change_of_a_mapped_account_attribute_is_its_own_changed_event(client, runtime, segment_api):
    """A member's own row does not change when its account does: two account changes in a row are two
    transitions, with two messageIds, or Segment would drop the second as a duplicate."""
    await create_segment(client, "Pro Users", PRO)
    entry = {
        **PRO_EVENTS,
        "properties": [{"from": "account.traits.employees", "to": "company_size"}],
        "timestamp": None,
    }
    await configure(runtime, segment_api, handle_accounts=True, segment_events=[entry])

    def group(user, employees):
        return {"type": "group", "userId": user, "groupId": "g-1", "traits": {"employees": employees}}

    await sent_after(client, runtime, segment_api, identify("pro"), group("u-1", 10))
    # A colleague's group calls change the account: u-1's own row stays as it was.
    [first] = await sent_after(client, runtime, segment_api, group("u-2", 20))
    [second] = await sent_after(client, runtime, segment_api, group("u-2", 30))
    assert summary([first, second]) == [
        ("Pro Updated", "u-1", {"company_size": 20}),
        ("Pro Updated", "u-1", {"company_size": 30}),
    ]
    assert first["messageId"] != second["messageId"]
