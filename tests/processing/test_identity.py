"""Identity resolution, traits and accounts, observed through the admin API (and the fake Segment's identifies)."""

from typing import Any

import sqlalchemy as sa

from connector.core.models import IdentityAudit
from tests.support.api import put_settings, send_and_process
from tests.support.app import admin_auth, basic_auth, drain
from tests.support.database import journal_statuses
from tests.support.fake_segment import configure, of_type, sent_after
from tests.support.inbound_cases import enable_accounts, find_user, user_profile

audit = IdentityAudit.__table__


async def audit_rows(runtime) -> list[Any]:
    async with runtime.engine.connect() as conn:
        return (await conn.execute(sa.select(audit).order_by(audit.c.id))).all()


async def events_of(client, profile: dict[str, Any]) -> list[dict[str, Any]]:
    return (await client.get(f"/api/users/{profile['id']}/events", headers=admin_auth())).json()["events"]


async def test_older_identify_does_not_overwrite_a_newer_trait(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-02T00:00:00Z", "traits": {"plan": "pro"}},
        {
            "type": "identify",
            "userId": "u1",
            "timestamp": "2024-05-01T00:00:00Z",
            "traits": {"plan": "free", "seats": 3},
        },
    )
    assert (await user_profile(client, user_id="u1"))["traits"] == {"plan": "pro", "seats": 3}
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "timestamp": "2024-05-03T00:00:00Z", "traits": {"plan": "team"}},
    )
    assert (await user_profile(client, user_id="u1"))["traits"] == {"plan": "team", "seats": 3}


async def test_null_values_are_ignored_and_nested_objects_kept(client, runtime):
    await send_and_process(
        client,
        runtime,
        {
            "type": "identify",
            "userId": "u1",
            "timestamp": "2024-05-01T00:00:00Z",
            "traits": {"name": "Ada", "address": {"city": "Paris", "geo": {"lat": 48.85}}, "tags": ["a", "b"]},
        },
        {
            "type": "identify",
            "userId": "u1",
            "timestamp": "2024-05-02T00:00:00Z",
            "traits": {"name": None, "age": None, "address": {"city": "Lyon"}},
        },
    )
    assert (await user_profile(client, user_id="u1"))["traits"] == {
        "name": "Ada",
        "address": {"city": "Lyon"},
        "tags": ["a", "b"],
    }


async def test_anonymous_profile_merges_into_the_identified_one(client, runtime):
    await send_and_process(
        client,
        runtime,
        {
            "type": "track",
            "anonymousId": "anon-1",
            "event": "Viewed",
            "messageId": "m-anon",
            "timestamp": "2024-05-01T00:00:00Z",
        },
        {"type": "identify", "anonymousId": "anon-1", "timestamp": "2024-05-01T00:00:00Z", "traits": {"theme": "dark"}},
    )
    anonymous = await user_profile(client, anonymous_id="anon-1")
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "timestamp": "2024-05-02T00:00:00Z"},
    )
    identified = await user_profile(client, user_id="u1")
    assert anonymous["id"] != identified["id"]

    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "timestamp": "2024-05-03T00:00:00Z"},
    )
    merged = await user_profile(client, anonymous_id="anon-1")
    assert merged["id"] == identified["id"]
    assert merged["identifiers"]["user_id"] == ["u1"]
    assert merged["identifiers"]["anonymous_id"] == ["anon-1"]
    assert merged["traits"] == {"theme": "dark", "plan": "pro"}
    assert merged["created_at"] == min(anonymous["created_at"], identified["created_at"])
    assert merged["created_at"] == anonymous["created_at"]
    assert [event["message_id"] for event in await events_of(client, merged)] == ["m-anon"]
    assert (await client.get(f"/api/users/{anonymous['id']}", headers=admin_auth())).status_code == 404

    rows = await audit_rows(runtime)
    assert [(row.action, row.kept_user_id, row.merged_user_id) for row in rows] == [
        ("merge", identified["id"], anonymous["id"])
    ]
    assert rows[0].details["identifiers"] == ["anonymous_id:anon-1"]


async def test_two_user_ids_never_merge_and_the_conflict_is_audited(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "alice", "anonymousId": "shared-device", "traits": {"n": "a"}},
        {
            "type": "identify",
            "userId": "bob",
            "anonymousId": "shared-device",
            "traits": {"n": "b"},
            "messageId": "m-conflict",
        },
    )
    alice, bob = await user_profile(client, user_id="alice"), await user_profile(client, user_id="bob")
    assert alice["id"] != bob["id"]
    assert alice["traits"] == {"n": "a"} and bob["traits"] == {"n": "b"}
    assert alice["identifiers"]["anonymous_id"] == ["shared-device"]
    assert bob["identifiers"]["anonymous_id"] == []
    conflicts = [row for row in await audit_rows(runtime) if row.action == "conflict"]
    assert len(conflicts) == 1
    assert conflicts[0].message_id == "m-conflict"
    assert conflicts[0].details["user_ids"] == ["alice", "bob"]
    assert all(row.action != "merge" for row in await audit_rows(runtime))


async def test_alias_merges_previous_id_into_user_id(client, runtime):
    # In three steps: the visitor's messages and u1's are in different journal partitions, which two batches may
    # apply in either order.
    await send_and_process(
        client, runtime, {"type": "track", "anonymousId": "visitor", "event": "Landed", "messageId": "m-1"}
    )
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "u1", "event": "Paid", "messageId": "m-2"},
    )
    await send_and_process(
        client, runtime, {"type": "alias", "previousId": "visitor", "userId": "u1", "messageId": "m-alias"}
    )
    profile = await user_profile(client, user_id="u1")
    assert (await user_profile(client, anonymous_id="visitor"))["id"] == profile["id"]
    assert sorted(event["message_id"] for event in await events_of(client, profile)) == ["m-1", "m-2"]
    merges = [row for row in await audit_rows(runtime) if row.action == "merge"]
    assert [(row.kept_user_id, row.message_id) for row in merges] == [(profile["id"], "m-alias")]


async def test_alias_of_a_new_user_id_takes_over_the_anonymous_profile(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "anonymousId": "visitor", "traits": {"theme": "dark"}},
        {"type": "alias", "previousId": "visitor", "userId": "u-new"},
    )
    profile = await user_profile(client, user_id="u-new")
    assert profile["identifiers"]["anonymous_id"] == ["visitor"]
    assert profile["traits"] == {"theme": "dark"}


async def test_alias_between_two_user_ids_never_merges(client, runtime):
    # Both users are stored before the alias: "old" and the alias are in different partitions, which two
    # batches may apply in either order (journal order holds within a partition).
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "old", "traits": {"a": 1}},
        {"type": "identify", "userId": "new", "traits": {"b": 2}},
    )
    await send_and_process(client, runtime, {"type": "alias", "previousId": "old", "userId": "new"})
    old, new = await user_profile(client, user_id="old"), await user_profile(client, user_id="new")
    assert old["id"] != new["id"] and old["traits"] == {"a": 1} and new["traits"] == {"b": 2}
    assert any(row.action == "conflict" for row in await audit_rows(runtime))


async def test_bogus_ids_are_never_identifiers(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "undefined", "anonymousId": "a-1", "traits": {"x": 1}},
        {"type": "identify", "userId": "'null'", "anonymousId": "a-2", "traits": {"y": 2}},
        {"type": "identify", "userId": "  0 ", "anonymousId": "a-3"},
    )
    for bogus in ("undefined", "'null'", "0", "  0 "):
        assert await find_user(client, user_id=bogus) is None, bogus
    profiles = [await user_profile(client, anonymous_id=f"a-{n}") for n in (1, 2, 3)]
    assert len({profile["id"] for profile in profiles}) == 3  # the bogus userId joined nothing
    assert all(profile["identifiers"]["user_id"] == [] for profile in profiles)


async def test_identify_by_email_uses_the_normalised_email_as_a_claim(client, runtime):
    await put_settings(client, identify_by_email=True)
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "traits": {"email": " Ada@Example.COM "}},
        {
            "type": "track",
            "anonymousId": "phone",
            "event": "Opened",
            "messageId": "m-phone",
            "context": {"traits": {"email": "ada@example.com"}},
        },
        {"type": "identify", "anonymousId": "laptop", "traits": {"email": "not-an-email"}},
    )
    profile = await user_profile(client, user_id="u1")
    assert profile["identifiers"]["email"] == ["ada@example.com"]
    assert profile["identifiers"]["anonymous_id"] == ["phone"]
    assert [event["message_id"] for event in await events_of(client, profile)] == ["m-phone"]
    assert (await user_profile(client, email="ADA@EXAMPLE.COM"))["id"] == profile["id"]
    laptop = await user_profile(client, anonymous_id="laptop")
    assert laptop["id"] != profile["id"] and laptop["identifiers"]["email"] == []


async def test_without_identify_by_email_the_email_joins_nothing(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "traits": {"email": "ada@example.com"}},
        {"type": "identify", "anonymousId": "phone", "traits": {"email": "ada@example.com"}},
    )
    assert (await user_profile(client, user_id="u1"))["id"] != (await user_profile(client, anonymous_id="phone"))["id"]


async def test_group_is_ignored_unless_handle_accounts(client, runtime):
    await send_and_process(
        client, runtime, {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"name": "Acme"}}
    )
    assert (await client.get("/api/accounts", params={"group_id": "g1"}, headers=admin_auth())).status_code == 404


async def test_group_creates_an_account_and_the_last_group_call_wins(client, runtime):
    await enable_accounts(client)
    await send_and_process(
        client,
        runtime,
        {
            "type": "group",
            "userId": "u1",
            "groupId": "g1",
            "timestamp": "2024-05-01T00:00:00Z",
            "traits": {"name": "Acme", "domain": "https://www.Acme.com/about"},
        },
        {
            "type": "group",
            "userId": "u2",
            "groupId": "g1",
            "timestamp": "2024-04-01T00:00:00Z",
            "traits": {"name": "Acme Old", "employees": 10},
        },
    )
    account = (await client.get("/api/accounts", params={"group_id": "g1"}, headers=admin_auth())).json()
    assert account["domain"] == "acme.com"
    assert account["traits"] == {"name": "Acme", "domain": "https://www.Acme.com/about", "employees": 10}
    by_domain = (await client.get("/api/accounts", params={"domain": "ACME.com"}, headers=admin_auth())).json()
    assert by_domain["id"] == account["id"]
    assert (await user_profile(client, user_id="u2"))["account"]["id"] == account["id"]

    await send_and_process(
        client, runtime, {"type": "group", "userId": "u1", "groupId": "g2", "traits": {"name": "Beta"}}
    )
    profile = await user_profile(client, user_id="u1")
    assert profile["account"]["group_id"] == "g2" and profile["account_link"] == "group"


async def test_domain_claim_finds_an_account_created_without_group_id(client, runtime):
    await enable_accounts(client)
    # One after the other: u1's and u2's calls are in different journal partitions, applied in either order.
    await send_and_process(
        client, runtime, {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"domain": "acme.com"}}
    )
    await send_and_process(
        client,
        runtime,
        {"type": "group", "userId": "u2", "groupId": "g2", "traits": {"domain": "acme.com", "name": "Other"}},
    )
    first = (await client.get("/api/accounts", params={"group_id": "g1"}, headers=admin_auth())).json()
    second = (await client.get("/api/accounts", params={"group_id": "g2"}, headers=admin_auth())).json()
    # The domain belongs to g1: g2 is its own account, without the domain claim.
    assert first["id"] != second["id"] and first["domain"] == "acme.com" and second["domain"] is None


async def test_page_and_screen_are_stored_only_when_enabled(client, runtime):
    calls = (
        {"type": "page", "userId": "u1", "name": "Home", "category": "Docs"},
        {"type": "screen", "userId": "u1", "name": "Settings"},
    )
    await send_and_process(client, runtime, *calls)
    profile = await user_profile(client, user_id="u1")
    stored = {event["event"]: event["properties"] for event in await events_of(client, profile)}
    assert stored == {"page": {"name": "Home", "category": "Docs"}, "screen": {"name": "Settings"}}

    await put_settings(client, handle_pages=False, handle_screens=False)
    await send_and_process(client, runtime, *({**call, "userId": "u2"} for call in calls))
    assert await find_user(client, user_id="u2") is None

    await put_settings(client, handle_screens=True)
    await send_and_process(client, runtime, *({**call, "userId": "u3"} for call in calls))
    profile = await user_profile(client, user_id="u3")
    assert [event["event"] for event in await events_of(client, profile)] == ["screen"]


async def test_event_pages_follow_time_order_when_events_arrive_late(client, runtime):
    """Paging with before_id walks (timestamp, id) newest first: each event exactly once."""
    stamps = ["2024-05-03", "2024-05-01", "2024-05-05", "2024-05-02", "2024-05-04"]  # arrival order
    for day in stamps:
        await client.post(
            "/v1/track",
            headers=basic_auth(),
            json={"userId": "pager", "event": f"E {day}", "timestamp": f"{day}T12:00:00Z"},
        )
    await drain(runtime)
    user = await user_profile(client, user_id="pager")
    seen, before = [], None
    while True:
        params = {"limit": 2, **({"before_id": before} if before else {})}
        page = (await client.get(f"/api/users/{user['id']}/events", params=params, headers=admin_auth())).json()[
            "events"
        ]
        if not page:
            break
        seen += [event["event"] for event in page]
        before = page[-1]["id"]
    assert seen == [f"E {day}" for day in sorted(stamps, reverse=True)]


async def test_a_late_older_group_call_does_not_move_the_user_back(client, runtime):
    await enable_accounts(client)
    await send_and_process(
        client,
        runtime,
        {"type": "group", "userId": "u1", "groupId": "new-co", "timestamp": "2024-05-02T00:00:00Z"},
        {"type": "group", "userId": "u1", "groupId": "old-co", "timestamp": "2024-05-01T00:00:00Z"},
    )
    assert (await user_profile(client, user_id="u1"))["account"]["group_id"] == "new-co"
    # The older call still records its account; only the user's link follows the newest call.
    assert (await client.get("/api/accounts", params={"group_id": "old-co"}, headers=admin_auth())).status_code == 200
    await send_and_process(
        client, runtime, {"type": "group", "userId": "u1", "groupId": "newest-co", "timestamp": "2024-05-03T00:00:00Z"}
    )
    assert (await user_profile(client, user_id="u1"))["account"]["group_id"] == "newest-co"


async def test_the_account_link_does_not_depend_on_delivery_order(client, runtime):
    await enable_accounts(client)
    calls = [
        {"type": "group", "userId": user, "groupId": group, "timestamp": f"2024-05-0{day}T00:00:00Z"}
        for user in ("in-order", "reversed")
        for day, group in ((1, "a"), (2, "b"), (2, "c"))
    ]
    await send_and_process(client, runtime, *calls[:3], *reversed(calls[3:]))
    linked = {
        user: (await user_profile(client, user_id=user))["account"]["group_id"] for user in ("in-order", "reversed")
    }
    assert linked["in-order"] == linked["reversed"] in ("b", "c")


async def test_a_merge_keeps_the_newer_account_link(client, runtime):
    await enable_accounts(client)
    await send_and_process(
        client,
        runtime,
        {"type": "group", "anonymousId": "visitor", "groupId": "newer", "timestamp": "2024-05-03T00:00:00Z"},
        {"type": "group", "userId": "u1", "groupId": "older", "timestamp": "2024-05-01T00:00:00Z"},
        {"type": "identify", "userId": "u1", "anonymousId": "visitor", "timestamp": "2024-05-04T00:00:00Z"},
    )
    assert (await user_profile(client, user_id="u1"))["account"]["group_id"] == "newer"


async def test_a_timestamp_in_the_future_does_not_freeze_a_trait(client, runtime):
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "u1", "timestamp": "2099-01-01T00:00:00Z", "traits": {"plan": "bad clock"}},
    )
    await send_and_process(client, runtime, {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}})
    assert (await user_profile(client, user_id="u1"))["traits"]["plan"] == "pro"


async def test_alias_from_a_known_user_id_to_a_new_one_renames_the_profile(client, runtime):
    # One after the other: the identify is in the visitor's journal partition, the alias in new-id's.
    identify = {"type": "identify", "userId": "old-id", "anonymousId": "visitor", "traits": {"plan": "pro"}}
    await send_and_process(client, runtime, identify)
    await send_and_process(client, runtime, {"type": "alias", "previousId": "old-id", "userId": "new-id"})
    renamed = await user_profile(client, user_id="new-id")
    assert renamed is not None and renamed["traits"] == {"plan": "pro"}
    assert (await user_profile(client, anonymous_id="visitor"))["id"] == renamed["id"]
    assert (await client.get("/api/users", params={"user_id": "old-id"}, headers=admin_auth())).json()["id"] == renamed[
        "id"
    ]
    await send_and_process(
        client,
        runtime,
        {"type": "identify", "userId": "old-id", "traits": {"seats": 4}},
        {"type": "track", "userId": "old-id", "event": "Late Event"},
    )
    assert (await user_profile(client, user_id="new-id"))["traits"] == {"plan": "pro", "seats": 4}
    assert [event["event"] for event in await events_of(client, renamed)] == ["Late Event"]
    async with runtime.engine.connect() as conn:
        users = await conn.scalar(sa.text("SELECT count(*) FROM users"))
    assert users == 1
    assert [(row.action, row.details) for row in await audit_rows(runtime)] == [
        ("rename", {"previous_user_id": "old-id", "user_id": "new-id"})
    ]


# --- identify_by_email and group calls, end to end to the fake Segment ---------------------------------------
# A group call's traits are the group's: their `email` is the company's address (the Spec: "Email address of
# group"), never a claim on the person. The person's own email in a group call's context.traits is read as on any
# other call. The fake Segment receives one identify per profile: two profiles are two identifies.

BILLING = "billing@acme.com"


async def start_with_identify_by_email(runtime, segment_api) -> None:
    await configure(
        runtime,
        segment_api,
        identify_by_email=True,
        handle_accounts=True,
        synchronized_segments=["ALL"],
        synchronized_properties=["email"],
    )


def company_group(who: dict[str, Any], **extra) -> dict[str, Any]:
    """A group call of Acme's, its traits carrying the company's billing address."""
    return {"type": "group", **who, "groupId": "acme", "traits": {"name": "Acme", "email": BILLING}, **extra}


def identities(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(userId, anonymousId, traits) of each identify the fake Segment received, sorted."""
    found = [(m.get("userId"), m.get("anonymousId"), m["traits"]) for m in of_type(messages, "identify")]
    return sorted(found, key=lambda item: (item[0] or "", item[1] or ""))


async def test_two_visitors_whose_group_calls_carry_the_company_address_stay_two_profiles(client, runtime, segment_api):
    await start_with_identify_by_email(runtime, segment_api)
    sent = await sent_after(
        client,
        runtime,
        segment_api,
        company_group({"anonymousId": "visitor-1"}, messageId="g-1"),
        company_group({"anonymousId": "visitor-2"}, messageId="g-2"),
    )
    first = await user_profile(client, anonymous_id="visitor-1")
    second = await user_profile(client, anonymous_id="visitor-2")
    assert first["id"] != second["id"]
    for profile in (first, second):
        assert profile["identifiers"]["email"] == [] and profile["traits"] == {}
        assert profile["account"]["group_id"] == "acme"
    assert await find_user(client, email=BILLING) is None
    assert identities(sent) == [
        (None, "visitor-1", {"hull_segments": []}),
        (None, "visitor-2", {"hull_segments": []}),
    ]


async def test_an_identified_user_who_sends_the_company_address_in_a_group_call_is_not_merged_with_a_visitor(
    client, runtime, segment_api
):
    await start_with_identify_by_email(runtime, segment_api)
    sent = await sent_after(
        client,
        runtime,
        segment_api,
        company_group({"anonymousId": "visitor-1"}, messageId="g-visitor"),
        {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}, "messageId": "i-ada"},
        company_group({"userId": "ada"}, messageId="g-ada"),
    )
    ada = await user_profile(client, user_id="ada")
    visitor = await user_profile(client, anonymous_id="visitor-1")
    assert ada["id"] != visitor["id"]
    assert ada["identifiers"] == {"user_id": ["ada"], "anonymous_id": [], "email": ["ada@example.com"]}
    assert ada["traits"] == {"email": "ada@example.com"}
    assert visitor["identifiers"]["email"] == []
    assert identities(sent) == [
        (None, "visitor-1", {"hull_segments": []}),
        ("ada", None, {"email": "ada@example.com", "hull_segments": []}),
    ]


async def test_a_group_call_claims_the_email_in_its_context_traits_even_when_the_group_has_traits(
    client, runtime, segment_api
):
    await start_with_identify_by_email(runtime, segment_api)
    sent = await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}, "messageId": "i-ada"},
        # Ada on another device: only her email says who she is, in context.traits as libraries send it.
        company_group(
            {"anonymousId": "ada-laptop"}, messageId="g-laptop", context={"traits": {"email": "Ada@Example.com"}}
        ),
        # Someone new: the group call gives their profile their email claim.
        company_group(
            {"anonymousId": "grace-phone"}, messageId="g-grace", context={"traits": {"email": "grace@example.com"}}
        ),
    )
    ada = await user_profile(client, user_id="ada")
    assert (await user_profile(client, anonymous_id="ada-laptop"))["id"] == ada["id"]
    assert ada["identifiers"] == {"user_id": ["ada"], "anonymous_id": ["ada-laptop"], "email": ["ada@example.com"]}
    grace = await user_profile(client, anonymous_id="grace-phone")
    assert grace["id"] != ada["id"]
    assert grace["identifiers"]["email"] == ["grace@example.com"]
    assert (await user_profile(client, email="GRACE@example.com"))["id"] == grace["id"]
    assert await find_user(client, email=BILLING) is None
    assert identities(sent) == [
        (None, "grace-phone", {"hull_segments": []}),
        ("ada", "ada-laptop", {"email": "ada@example.com", "hull_segments": []}),
    ]


async def test_a_group_call_naming_an_erased_email_in_its_context_traits_is_dropped_as_suppressed(
    client, runtime, segment_api
):
    await start_with_identify_by_email(runtime, segment_api)
    await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "ada", "traits": {"email": "ada@example.com"}, "messageId": "i-ada"},
    )
    erased = await client.delete("/api/users", headers=admin_auth(), params={"user_id": "ada"})
    assert erased.status_code == 200 and erased.json()["suppressed"] == 2, erased.text  # user_id and email

    sent = await sent_after(
        client,
        runtime,
        segment_api,
        company_group(
            {"anonymousId": "ada-laptop"}, messageId="g-laptop", context={"traits": {"email": "ada@example.com"}}
        ),
    )
    assert await find_user(client, anonymous_id="ada-laptop") is None
    assert await find_user(client, email="ada@example.com") is None
    statuses = {row.message_id: row.status for row in await journal_statuses(runtime.engine)}
    assert statuses["g-laptop"] == "processed"
    assert sent == []


NIL_UUID = "00000000-0000-0000-0000-000000000000"


async def test_two_users_sending_the_nil_uuid_as_anonymous_id_stay_two_profiles_without_it(
    client, runtime, segment_api
):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["plan"])
    sent = await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "ada", "anonymousId": NIL_UUID, "traits": {"plan": "pro"}},
        {"type": "identify", "userId": "bob", "anonymousId": NIL_UUID, "traits": {"plan": "free"}},
        {"type": "track", "userId": "bob", "anonymousId": "0000", "event": "Signed In"},
    )
    ada, bob = await user_profile(client, user_id="ada"), await user_profile(client, user_id="bob")
    assert ada["id"] != bob["id"]
    assert ada["identifiers"]["anonymous_id"] == [] and bob["identifiers"]["anonymous_id"] == []
    assert await find_user(client, anonymous_id=NIL_UUID) is None
    assert [row.action for row in await audit_rows(runtime)] == []  # nothing linked them: no conflict either
    assert identities(sent) == [
        ("ada", None, {"plan": "pro", "hull_segments": []}),
        ("bob", None, {"plan": "free", "hull_segments": []}),
    ]
    # Alone, the nil UUID identifies nobody: refused as 'null' would be.
    response = await client.post(
        "/v1/batch", headers=basic_auth(), json={"batch": [{"type": "track", "anonymousId": NIL_UUID, "event": "E"}]}
    )
    assert response.status_code == 400 and response.json()["rejected"][0]["field"] == "userId"
