"""Identity resolution, pinned where mutation testing found it loose: what a rename audits, a
profile whose anonymousId equals its userId, and emails that are not strings or traits that are
not objects (they must never stop a message from being processed).
"""

import json

import sqlalchemy as sa

from connector.core.models import IdentityAudit, UserIdentifier
from tests.support.api import create_segment, send_and_process
from tests.support.app import admin_auth
from tests.support.database import journal_status_counts
from tests.support.inbound_cases import find_user, user_profile

audit = IdentityAudit.__table__
identifiers = UserIdentifier.__table__


async def table(runtime, which):
    async with runtime.engine.connect() as conn:
        return (await conn.execute(sa.select(which))).all()


async def failed_journal_rows(runtime) -> int:
    return (await journal_status_counts(runtime.engine)).get("failed", 0)


async def test_a_rename_is_audited_with_the_profile_and_the_alias_message(client, runtime):
    # One after the other: the alias is in new-id's journal partition, which a batch may apply before old-id's.
    await send_and_process(client, runtime, {"type": "identify", "userId": "old-id", "traits": {"plan": "pro"}})
    await send_and_process(
        client, runtime, {"type": "alias", "previousId": "old-id", "userId": "new-id", "messageId": "m-rename"}
    )
    profile = await user_profile(client, user_id="new-id")
    [row] = await table(runtime, audit)
    assert (row.action, row.kept_user_id, row.merged_user_id, row.message_id) == (
        "rename",
        profile["id"],
        None,
        "m-rename",
    )
    assert row.details == {"previous_user_id": "old-id", "user_id": "new-id"}


async def test_a_profile_whose_anonymous_id_equals_its_user_id_can_be_renamed(client, runtime):
    # One after the other: the alias is in ada-2's journal partition, which a batch may apply before ada's.
    identify = {"type": "identify", "userId": "ada", "anonymousId": "ada", "traits": {"plan": "pro"}}
    await send_and_process(client, runtime, identify)
    await send_and_process(client, runtime, {"type": "alias", "previousId": "ada", "userId": "ada-2"})
    renamed = await user_profile(client, user_id="ada-2")
    assert renamed is not None and renamed["traits"] == {"plan": "pro"}
    assert renamed["identifiers"]["user_id"] == ["ada-2"] and renamed["identifiers"]["anonymous_id"] == ["ada"]
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM users")) == 1
    assert [row.action for row in await table(runtime, audit)] == ["rename"]


async def test_a_numeric_email_trait_is_no_identifier_and_stops_nothing(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"identify_by_email": True})
    assert response.status_code == 200, response.text
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u-1", "traits": {"email": 12345, "plan": "pro"}},
        {"type": "identify", "userId": "u-2", "traits": {"email": ["ada@example.com"]}},
    )
    assert await failed_journal_rows(runtime) == 0
    assert (await user_profile(client, user_id="u-1"))["traits"] == {"email": 12345, "plan": "pro"}
    kinds = {row.kind for row in await table(runtime, identifiers)}
    assert kinds == {"user_id"}


async def test_context_traits_that_are_not_an_object_stop_nothing(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"identify_by_email": True})
    assert response.status_code == 200, response.text
    await send_and_process(
        client,
        runtime,
        {"type": "track", "userId": "u-1", "event": "Signed In", "context": {"traits": "ada@example.com"}},
    )
    assert await failed_journal_rows(runtime) == 0
    assert (await find_user(client, user_id="u-1")) is not None
    assert {row.kind for row in await table(runtime, identifiers)} == {"user_id"}


async def user_row(runtime, profile_id):
    async with runtime.engine.connect() as conn:
        return (
            await conn.execute(
                sa.text("SELECT last_seen_at, account_id, account_link FROM users WHERE id = :id"), {"id": profile_id}
            )
        ).one()


async def test_a_merge_keeps_the_later_last_seen_of_the_two_profiles(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed", "timestamp": "2024-05-03T00:00:00Z"},
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-01T00:00:00Z"},
    )
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "timestamp": "2024-05-02T00:00:00Z"},
    )
    merged = await user_profile(client, user_id="u1")
    assert merged["last_seen_at"].startswith("2024-05-03T00:00:00")


async def test_a_merge_keeps_each_trait_with_its_time_so_an_older_message_cannot_overwrite_it(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "anonymousId": "anon-1", "timestamp": "2024-05-03T00:00:00Z", "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-01T00:00:00Z", "traits": {"plan": "free"}},
    )
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "timestamp": "2024-05-04T00:00:00Z"},
    )
    assert (await user_profile(client, user_id="u1"))["traits"] == {"plan": "pro"}
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-02T00:00:00Z", "traits": {"plan": "team"}},
    )
    assert (await user_profile(client, user_id="u1"))["traits"] == {"plan": "pro"}


async def test_a_merge_keeps_the_group_link_of_the_merged_away_profile(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    assert response.status_code == 200, response.text
    await send_and_process(
        client,
        runtime,
        {"type": "group", "anonymousId": "anon-1", "groupId": "g-1", "timestamp": "2024-05-01T00:00:00Z"},
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-01T00:00:00Z"},
    )
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "timestamp": "2024-05-02T00:00:00Z"},
    )
    merged = await user_profile(client, user_id="u1")
    row = await user_row(runtime, merged["id"])
    assert row.account_id is not None and row.account_link == "group"


async def test_a_conflict_is_audited_with_the_kept_profile_the_other_profiles_and_both_user_ids(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "alice", "anonymousId": "shared-device"},
        {"type": "identify", "userId": "bob", "anonymousId": "shared-device", "messageId": "m-conflict"},
    )
    alice, bob = await user_profile(client, user_id="alice"), await user_profile(client, user_id="bob")
    [row] = [row for row in await table(runtime, audit) if row.action == "conflict"]
    assert (row.kept_user_id, row.merged_user_id, row.message_id) == (bob["id"], None, "m-conflict")
    assert row.details == {"reason": "different user_ids", "user_ids": ["alice", "bob"], "profiles": [alice["id"]]}


async def test_a_merge_hands_what_segment_was_told_about_both_calls_to_the_survivor(client, runtime, segment_api):
    from tests.support.fake_segment import configure, send_all

    await configure(
        runtime, segment_api, synchronized_segments=["ALL"], synchronized_account_segments=["ALL"], handle_accounts=True
    )
    await send_and_process(
        client,
        runtime,
        {"type": "group", "anonymousId": "anon-1", "groupId": "g-1"},
        {"type": "identify", "userId": "u1"},
    )
    await send_all(runtime)
    loser = (await user_profile(client, anonymous_id="anon-1"))["id"]
    survivor = (await user_profile(client, user_id="u1"))["id"]
    async with runtime.engine.connect() as conn:
        before = set((await conn.execute(sa.text("SELECT key FROM delivery_state"))).scalars())
    assert before == {f"identify:{loser}", f"group:{loser}", f"identify:{survivor}"}

    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    async with runtime.engine.connect() as conn:
        after = {
            row.key: row
            for row in await conn.execute(sa.text("SELECT key, payload_hash, in_filter FROM delivery_state"))
        }
    assert set(after) == {f"identify:{survivor}", f"group:{survivor}"}
    assert after[f"group:{survivor}"].payload_hash == "" and after[f"group:{survivor}"].in_filter
    assert after[f"identify:{survivor}"].payload_hash == ""


async def test_the_first_user_id_of_an_anonymous_profile_keeps_that_profile(client, runtime):
    await send_and_process(client, runtime, {"type": "track", "anonymousId": "anon-1", "event": "Viewed"})
    anonymous = await user_profile(client, anonymous_id="anon-1")
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    identified = await user_profile(client, user_id="u1")
    assert identified["id"] == anonymous["id"]
    assert identified["identifiers"]["anonymous_id"] == ["anon-1"]
    assert [row.action for row in await table(runtime, audit)] == []


async def test_an_anonymous_profile_found_by_email_merges_into_the_profile_with_a_user_id(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"identify_by_email": True})
    assert response.status_code == 200, response.text
    await send_and_process(client, runtime, {"type": "track", "anonymousId": "anon-1", "event": "Viewed"})
    anonymous = await user_profile(client, anonymous_id="anon-1")
    await send_and_process(
        client, runtime, {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}}
    )
    identified = await user_profile(client, user_id="u1")
    assert anonymous["id"] < identified["id"]  # the anonymous profile is the older one, and it still loses
    await send_and_process(
        client, runtime, {"type": "identify", "anonymousId": "anon-1", "traits": {"email": "ada@example.com"}}
    )
    merged = await user_profile(client, anonymous_id="anon-1")
    assert merged["id"] == identified["id"] and merged["identifiers"]["user_id"] == ["u1"]
    assert [(row.action, row.kept_user_id, row.merged_user_id) for row in await table(runtime, audit)] == [
        ("merge", identified["id"], anonymous["id"])
    ]


async def test_events_buffered_in_the_batch_that_merges_their_profile_follow_it(client, runtime):
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1"})
    await send_and_process(
        client,
        runtime,
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed", "messageId": "m-viewed"},
        {"type": "page", "anonymousId": "anon-1", "name": "Pricing", "messageId": "m-page"},
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1"},
    )
    merged = await user_profile(client, user_id="u1")
    events = (await client.get(f"/api/users/{merged['id']}/events", headers=admin_auth())).json()["events"]
    assert sorted(event["message_id"] for event in events) == ["m-page", "m-viewed"]
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM users")) == 1
        assert await conn.scalar(sa.text("SELECT count(*) FROM events")) == 2


async def transitions_of(runtime, segment_id):
    async with runtime.engine.connect() as conn:
        return [
            (row.entity_id, row.transition)
            for row in await conn.execute(
                sa.text("SELECT entity_id, transition FROM segment_transitions WHERE segment_id = :s ORDER BY id"),
                {"s": segment_id},
            )
        ]


async def test_a_merge_moves_the_loser_s_memberships_with_their_entry_and_no_new_entered(client, runtime):
    viewers = await create_segment(client, "Viewers", {"event": "Viewed"})
    await send_and_process(
        client,
        runtime,
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
        {"type": "identify", "userId": "u1"},
    )
    loser = (await user_profile(client, anonymous_id="anon-1"))["id"]
    survivor = (await user_profile(client, user_id="u1"))["id"]
    assert await transitions_of(runtime, viewers) == [(loser, "entered")]
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    assert (await user_profile(client, user_id="u1"))["segments"] == ["Viewers"]
    assert await transitions_of(runtime, viewers) == [(loser, "entered")]  # the membership moved: nothing re-entered
    async with runtime.engine.connect() as conn:
        assert [
            tuple(row)
            for row in await conn.execute(
                sa.text("SELECT entity_id FROM segment_memberships WHERE segment_id = :s"), {"s": viewers}
            )
        ] == [(survivor,)]


async def test_a_merge_of_two_members_of_one_segment_keeps_one_membership(client, runtime):
    everyone = await create_segment(client, "No plan", {"attribute": "traits.plan", "op": "not_exists"})
    await send_and_process(
        client,
        runtime,
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
        {"type": "identify", "userId": "u1"},
    )
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    assert await failed_journal_rows(runtime) == 0
    survivor = (await user_profile(client, user_id="u1"))["id"]
    async with runtime.engine.connect() as conn:
        assert [
            tuple(row)
            for row in await conn.execute(
                sa.text("SELECT entity_id FROM segment_memberships WHERE segment_id = :s"), {"s": everyone}
            )
        ] == [(survivor,)]


async def test_a_merge_gives_the_survivor_none_of_another_user_s_memberships(client, runtime):
    pro = await create_segment(client, "Pro", {"attribute": "traits.plan", "op": "eq", "value": "pro"})
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "carl", "traits": {"plan": "pro"}},
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
        {"type": "identify", "userId": "u1"},
    )
    carl = (await user_profile(client, user_id="carl"))["id"]
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    assert (await user_profile(client, user_id="u1"))["segments"] == []
    assert await transitions_of(runtime, pro) == [(carl, "entered")]


async def test_a_merge_keeps_the_time_of_the_loser_s_group_link_so_an_older_group_call_cannot_move_it(client, runtime):
    response = await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    assert response.status_code == 200, response.text
    await send_and_process(
        client,
        runtime,
        {"type": "group", "anonymousId": "anon-1", "groupId": "g-new", "timestamp": "2024-05-03T00:00:00Z"},
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-01T00:00:00Z"},
    )
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "timestamp": "2024-05-04T00:00:00Z"},
    )
    merged = await user_profile(client, user_id="u1")
    linked = (await user_row(runtime, merged["id"])).account_id
    # a group call made before the one the link came from, arriving late
    await send_and_process(
        client, runtime, {"type": "group", "userId": "u1", "groupId": "g-old", "timestamp": "2024-05-02T00:00:00Z"}
    )
    row = await user_row(runtime, merged["id"])
    assert (row.account_id, row.account_link) == (linked, "group")


async def test_a_merge_marks_the_survivor_updated(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
    )
    before = (await user_profile(client, user_id="u1"))["updated_at"]
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    merged = await user_profile(client, user_id="u1")
    assert merged["identifiers"]["anonymous_id"] == ["anon-1"]
    assert merged["updated_at"] > before


async def set_delivery_state(runtime, rows):
    async with runtime.engine.begin() as conn:
        for key, segments, in_filter in rows:
            await conn.execute(
                sa.text(
                    "INSERT INTO delivery_state (key, payload_hash, segments, in_filter, delivered_at) "
                    "VALUES (:key, 'sent', :segments, :in_filter, CURRENT_TIMESTAMP)"
                ),
                {"key": key, "segments": json.dumps(segments), "in_filter": in_filter},
            )


async def delivery_state(runtime):
    async with runtime.engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT key, segments, in_filter FROM delivery_state"))
        return {
            row.key: (
                sorted(row.segments if isinstance(row.segments, list) else json.loads(row.segments)),
                bool(row.in_filter),
            )
            for row in rows
        }


async def test_a_merge_hands_over_what_segment_was_told_of_one_call_when_the_loser_had_only_the_other(client, runtime):
    # Two merges: anon-1 was only sent a group call and u1 an identify and a group call;
    # anon-2 was only sent an identify, still in the filter, and u2 nothing.
    await send_and_process(
        client,
        runtime,
        *[
            {"type": "track", user: value, "event": "Viewed"}
            for user, value in [
                ("userId", "u1"),
                ("anonymousId", "anon-1"),
                ("userId", "u2"),
                ("anonymousId", "anon-2"),
            ]
        ],
    )
    ids = {
        name: (await user_profile(client, **{kind: name}))["id"]
        for kind, name in [("user_id", "u1"), ("anonymous_id", "anon-1"), ("user_id", "u2"), ("anonymous_id", "anon-2")]
    }
    await set_delivery_state(
        runtime,
        [
            (f"identify:{ids['u1']}", ["Kept"], False),
            (f"group:{ids['u1']}", ["Kept"], False),
            (f"group:{ids['anon-1']}", ["Lost"], False),
            (f"identify:{ids['anon-2']}", ["Trial"], True),
        ],
    )
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1"},
        {"type": "identify", "userId": "u2", "anonymousId": "anon-2"},
    )
    assert await delivery_state(runtime) == {
        f"identify:{ids['u1']}": (["Kept"], False),  # anon-1 had no identify: untouched
        f"group:{ids['u1']}": (["Kept", "Lost"], False),  # both sides' segments, neither in the filter
        f"identify:{ids['u2']}": (["Trial"], True),  # the loser's alone, in the filter
    }


async def test_a_merge_moves_the_loser_s_memberships_into_a_survivor_that_has_memberships_of_its_own(client, runtime):
    signed_up = await create_segment(client, "Signed up", {"event": "Signed Up"})
    viewers = await create_segment(client, "Viewers", {"event": "Viewed"})
    await send_and_process(
        client,
        runtime,
        {"type": "track", "anonymousId": "anon-1", "event": "Viewed"},
        {"type": "track", "userId": "u1", "event": "Signed Up"},
    )
    loser = (await user_profile(client, anonymous_id="anon-1"))["id"]
    survivor = (await user_profile(client, user_id="u1"))["id"]
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-1"})
    assert sorted((await user_profile(client, user_id="u1"))["segments"]) == ["Signed up", "Viewers"]
    assert await transitions_of(runtime, viewers) == [(loser, "entered")]  # moved, not entered again
    assert await transitions_of(runtime, signed_up) == [(survivor, "entered")]


async def test_a_merge_leaves_the_account_segments_of_an_account_whose_id_is_the_loser_s(client, runtime):
    # Users and accounts number their ids apart: account 2 is no user, whatever user 2 merges into.
    await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    # One after the other, so that the ids are 1 and 2: u1 and anon-2 are in different journal partitions.
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1"})
    await send_and_process(client, runtime, {"type": "track", "anonymousId": "anon-2", "event": "Viewed"})
    await send_and_process(
        client,
        runtime,
        {"type": "group", "userId": "u1", "groupId": "small", "traits": {"employees": 5}},
        {"type": "group", "userId": "u1", "groupId": "big", "traits": {"employees": 50}},
    )
    loser = (await user_profile(client, anonymous_id="anon-2"))["id"]
    big = (await client.get("/api/accounts", params={"group_id": "big"}, headers=admin_auth())).json()
    assert big["id"] == loser, "the case needs an account whose id is the merged-away user's"
    response = await client.post(
        "/api/segments",
        headers=admin_auth(),
        json={"name": "Big", "entity": "account", "rule": {"attribute": "traits.employees", "op": "gte", "value": 10}},
    )
    assert response.status_code == 201 and response.json()["member_count"] == 1, response.text
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "anonymousId": "anon-2"})
    assert (await user_profile(client, anonymous_id="anon-2"))["user_id"] == "u1"  # merged
    big = (await client.get("/api/accounts", params={"group_id": "big"}, headers=admin_auth())).json()
    assert big["segments"] == ["Big"]
