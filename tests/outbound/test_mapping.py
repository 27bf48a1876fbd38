"""Field mapping (Hightouch style): an attribute sent under a name of the user's choosing.

An entry of synchronized_properties / synchronized_account_properties is an attribute name
(Hull's name rule) or {"from": attribute, "to": name}; `from` reads what segment rules read,
else falls back to Hull's rule. Renamed traits reach the fake Segment through the real
transport; the payload hash covers the names, so a renamed mapping resends once.
"""

from datetime import UTC, datetime

import pytest

from connector.core.models import User
from tests.support.api import post_batch_accepted
from tests.support.app import admin_auth, drain
from tests.support.fake_segment import configure, of_type, send_all, sent_after

users = User.__table__
NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_renamed_traits_reach_segment_under_the_names_chosen(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        handle_accounts=True,
        synchronized_account_segments=["ALL"],
        synchronized_properties=[
            "email",
            {"from": "traits.plan", "to": "Plan Name"},
            {"from": "traits.address.city", "to": "city"},
            {"from": "created_at", "to": "signed_up_at"},
            {"from": "account.traits.employees", "to": "company_size"},
            {"from": "account.domain", "to": "company_domain"},
            {"from": "usage.events_30d", "to": "recent_usage"},
            {"from": "email", "to": "mail"},  # no rule reads `email`: Hull's rule, the trait
            {"from": "traits.missing", "to": "never_sent"},
        ],
        synchronized_account_properties=[
            {"from": "traits.industry", "to": "sector"},
            {"from": "domain", "to": "website"},
            "employees",
        ],
    )
    await post_batch_accepted(
        client,
        {
            "type": "identify",
            "userId": "u-1",
            "traits": {"email": "ada@example.com", "plan": "pro", "address": {"city": "Paris"}},
        },
        {
            "type": "group",
            "userId": "u-1",
            "groupId": "g-1",
            "traits": {"domain": "example.com", "industry": "Software", "employees": 120},
        },
        {"type": "track", "userId": "u-1", "event": "Used", "timestamp": NOW, "properties": {"feature": "reports"}},
        {"type": "track", "userId": "u-1", "event": "Used", "timestamp": NOW, "properties": {"feature": "export"}},
    )
    await drain(runtime)
    async with runtime.engine.begin() as conn:
        await conn.execute(users.update().values(created_at=datetime(2023, 4, 5, 6, 7, 8, tzinfo=UTC)))
    await send_all(runtime)

    [identify] = of_type(segment_api.messages, "identify")
    assert identify["traits"] == {
        "email": "ada@example.com",
        "Plan Name": "pro",
        "city": "Paris",
        "signed_up_at": "2023-04-05T06:07:08.000000Z",
        "company_size": 120,
        "company_domain": "example.com",
        "recent_usage": 2,
        "mail": "ada@example.com",
        "hull_segments": [],
    }
    [group] = of_type(segment_api.messages, "group")
    assert group["traits"] == {"sector": "Software", "website": "example.com", "employees": 120}


async def test_a_user_property_reads_the_account_s_usage_with_no_account_property_chosen(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        handle_accounts=True,
        synchronized_properties=["account.usage.events_30d"],
        synchronized_account_properties=[],
    )
    used = {"type": "track", "event": "Used", "timestamp": NOW, "properties": {"feature": "reports"}}
    await post_batch_accepted(
        client,
        {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}},
        {"type": "group", "userId": "u-2", "groupId": "g-1"},
        {**used, "userId": "u-1", "messageId": "used-1"},
        {**used, "userId": "u-1", "messageId": "used-2"},
        {**used, "userId": "u-2", "messageId": "used-3"},
    )
    await drain(runtime)
    await send_all(runtime)

    identifies = {message["userId"]: message["traits"] for message in of_type(segment_api.messages, "identify")}
    # Three events by the account's two users in the last 30 days.
    assert identifies == {
        "u-1": {"account_usage_events_30d": 3, "hull_segments": []},
        "u-2": {"account_usage_events_30d": 3, "hull_segments": []},
    }


async def test_an_unchanged_payload_is_not_sent_again(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_properties=[{"from": "traits.plan", "to": "tier"}],
    )
    first = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}}
    )
    assert [message["traits"] for message in first] == [{"tier": "pro", "hull_segments": []}]

    # A trait that is not mapped changed: the payload Segment would receive is the same.
    again = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"theme": "dark"}}
    )
    assert again == []


async def test_a_renamed_mapping_resends_once_then_stops(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_properties=[{"from": "traits.plan", "to": "tier"}],
    )
    await sent_after(client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"plan": "pro"}})
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_properties=[{"from": "traits.plan", "to": "plan_tier"}],
    )

    renamed = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"theme": "dark"}}
    )
    assert [message["traits"] for message in renamed] == [{"plan_tier": "pro", "hull_segments": []}]
    assert renamed[0]["messageId"] != segment_api.messages[0]["messageId"]

    after = await sent_after(
        client, runtime, segment_api, {"type": "identify", "userId": "u-1", "traits": {"theme": "light"}}
    )
    assert after == []


async def test_a_plain_name_keeps_hull_s_rule_beside_mappings(client, runtime, segment_api):
    """`created_at` written plainly is the trait, as it always was; mapped, it is the profile's creation time."""
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_properties=["created_at", "traits_plan", {"from": "traits.created_at", "to": "trait_created"}],
    )
    sent = await sent_after(
        client,
        runtime,
        segment_api,
        {"type": "identify", "userId": "u-1", "traits": {"created_at": "yesterday", "plan": "pro"}},
    )
    assert [message["traits"] for message in sent] == [
        {"created_at": "yesterday", "plan": "pro", "trait_created": "yesterday", "hull_segments": []}
    ]


async def test_a_mapping_is_stored_and_returned_as_written(client):
    document = {
        "synchronized_properties": ["email", {"from": " traits.plan ", "to": " Plan "}],
        "synchronized_account_properties": [{"from": "domain", "to": "website"}],
    }
    response = await client.put("/api/settings", headers=admin_auth(), json=document)
    assert response.status_code == 200, response.text
    settings = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    assert settings["synchronized_properties"] == ["email", {"from": "traits.plan", "to": "Plan"}]
    assert settings["synchronized_account_properties"] == [{"from": "domain", "to": "website"}]


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        (
            {"synchronized_properties": ["email", {"from": "traits.plan", "to": ""}]},
            "synchronized_properties",
            'entry 2 {"from":"traits.plan","to":""}: the name in Segment (to) must not be empty',
        ),
        (
            {"synchronized_properties": ["email", {"from": "traits.mail", "to": "email"}]},
            "synchronized_properties",
            """entry 2 {"from":"traits.mail","to":"email"}: 'email' is already sent by entry 1 'email'""",
        ),
        (
            {"synchronized_properties": [{"from": "traits.plan", "to": "plan"}, "traits_plan"]},
            "synchronized_properties",
            """entry 2 'traits_plan': 'plan' is already sent by entry 1 {"from":"traits.plan","to":"plan"}""",
        ),
        (
            {"synchronized_account_properties": [{"from": "a", "to": "x"}, {"from": "b", "to": " x "}]},
            "synchronized_account_properties",
            """entry 2 {"from":"b","to":"x"}: 'x' is already sent by entry 1 {"from":"a","to":"x"}""",
        ),
        (
            {"synchronized_properties": [{"from": "traits.tags", "to": "hull_segments"}]},
            "synchronized_properties",
            "'hull_segments' is sent by the connector itself",
        ),
        (
            {"synchronized_properties": [{"from": " ", "to": "x"}]},
            "synchronized_properties",
            'entry 1 {"from":"","to":"x"}: the attribute must not be empty',
        ),
        (
            {"segment_events": [{"segment": "VIP", "added": "VIP Added", "properties": [{"from": "a", "to": ""}]}]},
            "segment_events.0.properties",
            'entry 1 {"from":"a","to":""}: the name in Segment (to) must not be empty',
        ),
        (
            {"segment_events": [{"segment": "VIP"}]},
            "segment_events",
            "entry 1 (segment 'VIP') names no event: set added, changed or removed",
        ),
        (
            {"segment_events": [{"segment": "VIP", "added": "A"}, {"segment": " VIP ", "removed": "R"}]},
            "segment_events",
            "entry 2: segment 'VIP' already has entry 1",
        ),
        (
            {"segment_events": [{"segment": "VIP", "added": " "}]},
            "segment_events.0.added",
            "must be left empty or have 1 to 200 characters",
        ),
        (
            {"segment_events": [{"segment": "VIP", "added": "A", "when": "now"}]},
            "segment_events.0.when",
            "is not a key of Segment events, entry 1 (the keys: segment, added, changed, removed, properties, "
            "timestamp)",
        ),
    ],
)
async def test_a_bad_mapping_or_segment_event_is_refused_naming_the_entry(client, document, field, message):
    before = (await client.get("/api/settings", headers=admin_auth())).json()
    response = await client.put("/api/settings", headers=admin_auth(), json=document)
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == field and message in error["message"], error
    assert (await client.get("/api/settings", headers=admin_auth())).json() == before


@pytest.mark.parametrize("synchronized_account_segments", [["ALL"], []])
async def test_an_account_change_resends_the_identifies_that_map_its_attributes(
    client, runtime, segment_api, synchronized_account_segments
):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        handle_accounts=True,
        synchronized_account_segments=synchronized_account_segments,
        synchronized_properties=["email", {"from": "account.traits.employees", "to": "company_size"}],
        synchronized_account_properties=["employees"],
    )
    ada = {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"employees": 10}}
    await sent_after(
        client, runtime, segment_api, ada, {"type": "identify", "userId": "ada", "traits": {"email": "a@x.io"}}
    )
    # A colleague's group call changes the account: Ada's identify carries the new size too.
    colleague = {"type": "group", "userId": "bob", "groupId": "acme", "traits": {"employees": 500}}
    sent = await sent_after(client, runtime, segment_api, colleague)
    identifies = {message["userId"]: message["traits"] for message in of_type(sent, "identify")}
    assert identifies["ada"] == {"email": "a@x.io", "company_size": 500, "hull_segments": []}
    assert identifies["bob"] == {"company_size": 500, "hull_segments": []}
    # Nothing changed since: nothing is sent again.
    assert of_type(await sent_after(client, runtime, segment_api, colleague), "identify") == []
