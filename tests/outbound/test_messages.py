"""What the connector sends to Segment: the exact JSON of each message type, and who gets nothing."""

import re
from typing import Any

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from connector import __version__
from connector.core.metrics import SKIPPED_OUT
from connector.core.models import utcnow
from connector.core.settings import trait_name
from connector.flow import outbox
from tests.support.api import post_batch
from tests.support.app import basic_auth, drain
from tests.support.fake_segment import add_segment, add_transition, configure, of_type, send_all, user_id_of

STAMP: dict[str, Any] = {
    "integrations": {"Webhooks": False},
    "context": {"integration": {"name": "hull-segment-connector", "version": __version__}},
}


async def test_every_message_type_exact_json(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["Paying Customers", "Trial Users"],
        handle_accounts=True,
        synchronized_properties=["email", "traits_plan", "address/city", "account.employees"],
        segment_membership_traits=True,
        synchronized_account_properties=["domain", "industry"],
        synchronized_account_segments=["Big Accounts"],
        send_events=["Order Completed", "page"],
        forward_events=True,
        entered_exited_events=True,
    )
    await post_batch(
        client,
        {
            "type": "identify",
            "userId": "u-1",
            "anonymousId": "a-1",
            "timestamp": "2024-05-01T10:00:00Z",
            "traits": {"email": "ada@example.com", "plan": "pro", "address": {"city": "Paris"}, "secret": "x"},
        },
        {
            "type": "group",
            "userId": "u-1",
            "groupId": "g-1",
            "timestamp": "2024-05-01T10:00:01Z",
            "traits": {"domain": "example.com", "industry": "Software", "employees": 120},
        },
        {
            "type": "track",
            "userId": "u-1",
            "event": "Order Completed",
            "messageId": "m-track",
            "timestamp": "2024-05-01T10:00:02Z",
            "properties": {"revenue": 42},
        },
        {
            "type": "page",
            "userId": "u-1",
            "name": "Pricing",
            "messageId": "m-page",
            "timestamp": "2024-05-01T10:00:03Z",
            "properties": {"path": "/pricing"},
        },
        {"type": "track", "userId": "u-1", "event": "Not Sent", "timestamp": "2024-05-01T10:00:04Z"},
    )
    await drain(runtime)
    user = await user_id_of(runtime, "u-1")
    paying = await add_segment(runtime, "Paying Customers", [user])
    trial = await add_segment(runtime, "Trial Users", [])
    async with runtime.engine.connect() as conn:
        account = (await conn.execute(sa.text("SELECT account_id FROM users WHERE id = :id"), {"id": user})).scalar()
    await add_segment(runtime, "Big Accounts", [account], entity="account")
    exited = await add_transition(runtime, trial, user, "exited")
    entered = await add_transition(runtime, paying, user, "entered")

    await send_all(runtime)

    [identify] = of_type(segment_api.messages, "identify")
    assert re.fullmatch(rf"hsc-identify-{user}-[0-9a-f]{{32}}", identify.pop("messageId"))
    assert identify == {
        "type": "identify",
        "userId": "u-1",
        "anonymousId": "a-1",
        **STAMP,
        "traits": {
            "email": "ada@example.com",
            "plan": "pro",
            "address_city": "Paris",
            "account_employees": 120,
            "hull_segments": ["Paying Customers"],
            "paying_customers": True,
        },
    }
    [group] = of_type(segment_api.messages, "group")
    assert re.fullmatch(rf"hsc-group-{user}-[0-9a-f]{{32}}", group.pop("messageId"))
    assert group == {
        "type": "group",
        "groupId": "g-1",
        "userId": "u-1",
        "anonymousId": "a-1",
        **STAMP,
        "traits": {"domain": "example.com", "industry": "Software", "hull_segments": ["Big Accounts"]},
    }
    [track] = of_type(segment_api.messages, "track", "Order Completed")
    assert track["messageId"] == "m-track" and track["timestamp"] == "2024-05-01T10:00:02.000000Z"
    assert track["properties"] == {"revenue": 42} and track["userId"] == "u-1"
    assert track["integrations"] == STAMP["integrations"]
    assert track["context"]["integration"] == STAMP["context"]["integration"]
    [page] = of_type(segment_api.messages, "page")
    assert (page["messageId"], page["name"], page["properties"]["path"]) == ("m-page", "Pricing", "/pricing")
    assert not of_type(segment_api.messages, "track", "Not Sent")
    [enter] = of_type(segment_api.messages, "track", "Segment Entered")
    [leave] = of_type(segment_api.messages, "track", "Segment Exited")
    assert enter["properties"] == {"segment_name": "Paying Customers", "segment_id": paying}
    assert leave["properties"] == {"segment_name": "Trial Users", "segment_id": trial}
    assert (enter["messageId"], leave["messageId"]) == (f"hsc-transition-{entered}", f"hsc-transition-{exited}")
    assert enter["integrations"] == STAMP["integrations"] and enter["userId"] == "u-1"
    assert len(segment_api.messages) == 6


async def test_users_outside_the_filter_get_nothing(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["VIP"],
        send_events=["ALL"],
        forward_events=True,
        entered_exited_events=True,
    )
    await post_batch(
        client,
        {"type": "identify", "userId": "in", "traits": {"email": "in@example.com"}},
        {"type": "identify", "userId": "out", "traits": {"email": "out@example.com"}},
        {"type": "track", "userId": "out", "event": "Signed In"},
        {"type": "track", "userId": "in", "event": "Signed In", "messageId": "in-event"},
    )
    await drain(runtime)
    other = await add_segment(runtime, "Other", [await user_id_of(runtime, "out")])
    await add_transition(runtime, other, await user_id_of(runtime, "out"), "entered")
    await add_segment(runtime, "VIP", [await user_id_of(runtime, "in")])
    await send_all(runtime)
    assert {m.get("userId") for m in segment_api.messages} == {"in"}
    assert sorted(m["type"] for m in segment_api.messages) == ["identify", "track"]
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(outbox.outbox))).scalar_one() == 0


async def test_all_sends_every_user_and_empty_filter_sends_nobody(client, runtime, segment_api):
    await configure(runtime, segment_api)  # synchronized_segments defaults to []
    await post_batch(client, {"type": "identify", "userId": "u-1", "traits": {"email": "a@example.com"}})
    await drain(runtime)
    await send_all(runtime)
    assert segment_api.messages == []
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await post_batch(client, {"type": "identify", "userId": "u-1", "traits": {"email": "b@example.com"}})
    await drain(runtime)
    await send_all(runtime)
    [identify] = segment_api.messages
    assert identify["traits"] == {"email": "b@example.com", "hull_segments": []}


async def deliver_from_segment(client, *messages):
    """What Segment's Webhooks destination delivers: POST /segment."""
    response = await client.post("/segment", headers=basic_auth(), json=list(messages))
    assert response.status_code == 200, response.text


async def test_forward_events_holds_back_only_what_segment_delivered(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"])
    await deliver_from_segment(
        client, {"type": "track", "userId": "u-1", "event": "From Segment", "messageId": "seg-1"}
    )
    await post_batch(client, {"type": "track", "userId": "u-1", "event": "From A Library", "messageId": "api-1"})
    await drain(runtime)
    await send_all(runtime)
    # /v1/* calls never went through Segment, so they cannot be echoes: send_events alone decides.
    assert sorted(m["messageId"] for m in of_type(segment_api.messages, "track")) == ["api-1"]

    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=True)
    await deliver_from_segment(
        client, {"type": "track", "userId": "u-1", "event": "From Segment", "messageId": "seg-2"}
    )
    await drain(runtime)
    await send_all(runtime)
    assert sorted(m["messageId"] for m in of_type(segment_api.messages, "track")) == ["api-1", "seg-2"]


async def test_send_events_applies_to_events_from_both_sources(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["Wanted"], forward_events=True)
    await deliver_from_segment(
        client,
        {"type": "track", "userId": "u-1", "event": "Wanted", "messageId": "seg-w"},
        {"type": "track", "userId": "u-1", "event": "Other", "messageId": "seg-o"},
    )
    await post_batch(
        client,
        {"type": "track", "userId": "u-1", "event": "Wanted", "messageId": "api-w"},
        {"type": "track", "userId": "u-1", "event": "Other", "messageId": "api-o"},
    )
    await drain(runtime)
    await send_all(runtime)
    assert sorted(m["messageId"] for m in of_type(segment_api.messages, "track")) == ["api-w", "seg-w"]


async def test_a_forwarded_event_keeps_the_routing_it_was_received_with_and_our_loop_flag_wins(
    client, runtime, segment_api
):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=True)
    await deliver_from_segment(
        client,
        {
            "type": "track",
            "userId": "u-1",
            "event": "Order Completed",
            "messageId": "seg-routed",
            "integrations": {"All": False, "Mixpanel": True},
        },
    )
    batch = {
        "integrations": {"Amplitude": {"session_id": 7}, "Webhooks": True},  # batch-level: for each message
        "batch": [
            {"type": "identify", "userId": "u-1", "traits": {"email": "ada@example.com"}},
            {"type": "track", "userId": "u-1", "event": "Signed In", "messageId": "api-batch"},
            {
                "type": "page",
                "userId": "u-1",
                "name": "Home",
                "messageId": "api-own",
                "integrations": {"Amplitude": False},
            },
        ],
    }
    assert (await client.post("/v1/batch", headers=basic_auth(), json=batch)).status_code == 200
    await post_batch(client, {"type": "track", "userId": "u-1", "event": "Signed Out", "messageId": "api-plain"})
    await drain(runtime)
    await send_all(runtime)

    routing = {message["messageId"]: message["integrations"] for message in segment_api.messages}
    assert routing.pop("seg-routed") == {"All": False, "Mixpanel": True, "Webhooks": False}
    assert routing.pop("api-batch") == {"Amplitude": {"session_id": 7}, "Webhooks": False}
    assert routing.pop("api-own") == {"Amplitude": False, "Webhooks": False}
    assert routing.pop("api-plain") == {"Webhooks": False}
    # The identify is the connector's own message, whatever its user's calls carried: the loop flag alone.
    assert list(routing.values()) == [{"Webhooks": False}]
    for message in segment_api.messages:
        assert message["context"] == {**message["context"], **STAMP["context"]}
        assert "_integrations" not in message["context"]


async def test_initial_transitions_need_send_initial_results(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], entered_exited_events=True)
    await post_batch(client, {"type": "identify", "userId": "u-1"})
    await drain(runtime)
    user = await user_id_of(runtime, "u-1")
    segment = await add_segment(runtime, "New", [user])
    await add_transition(runtime, segment, user, "entered", initial=True)
    await send_all(runtime)
    assert not of_type(segment_api.messages, "track")
    await configure(
        runtime, segment_api, synchronized_segments=["ALL"], entered_exited_events=True, send_initial_results=True
    )
    transition = await add_transition(runtime, segment, user, "entered", initial=True)
    await send_all(runtime)
    assert [m["messageId"] for m in of_type(segment_api.messages, "track", "Segment Entered")] == [
        f"hsc-transition-{transition}"
    ]


async def test_unchanged_payload_is_not_sent_again_and_changes_coalesce(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["email", "plan"])
    await post_batch(
        client,
        *[
            {
                "type": "identify",
                "userId": "u-1",
                "traits": {"plan": f"p{n}"},
                "timestamp": f"2024-05-01T10:00:{n:02d}Z",
            }
            for n in range(10)
        ],
    )
    await drain(runtime)
    await send_all(runtime)
    [identify] = segment_api.messages  # ten changes, one identify, with the latest value
    assert identify["traits"]["plan"] == "p9"

    skipped_before = SKIPPED_OUT.labels("unchanged")._value.get()
    await post_batch(client, {"type": "identify", "userId": "u-1", "traits": {"plan": "p9", "ignored": 1}})
    await drain(runtime)
    await send_all(runtime)
    assert len(segment_api.messages) == 1
    assert SKIPPED_OUT.labels("unchanged")._value.get() == skipped_before + 1

    await post_batch(client, {"type": "identify", "userId": "u-1", "traits": {"plan": "team"}})
    await drain(runtime)
    await send_all(runtime)
    assert [m["traits"]["plan"] for m in segment_api.messages] == ["p9", "team"]


async def test_group_omits_hull_segments_when_no_account_segment_exists(client, runtime, segment_api):
    await configure(
        runtime, segment_api, synchronized_segments=["ALL"], synchronized_account_segments=["ALL"], handle_accounts=True
    )
    await post_batch(client, {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"domain": "acme.io"}})
    await drain(runtime)
    await send_all(runtime)
    [group] = of_type(segment_api.messages, "group")
    assert group["traits"] == {"domain": "acme.io"}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["", "account.", "traits_", "traits.", "usage.", "audiences.", "account.usage.", "account.traits."]
    ),
    st.text(alphabet="abcXYZ_/.0 -", min_size=1, max_size=20),
)
def test_trait_names(prefix, rest):
    attribute = prefix + rest
    name = trait_name(attribute)
    assert "/" not in name
    if attribute.startswith("account."):
        assert name == "account_" + trait_name(attribute[len("account.") :])
    elif attribute.startswith(("usage.", "audiences.")):
        assert "." not in name and name == attribute.replace(".", "_").replace("/", "_")
    elif attribute.startswith("traits."):  # the rules' spelling of a trait: sent under the trait's own name
        assert name == rest.replace(".", "_").replace("/", "_")
    else:
        assert name == attribute.removeprefix("traits_").replace("/", "_")


async def test_computed_attributes_are_sent_like_traits(client, runtime, segment_api):
    """usage.* and audiences.* in synchronized_properties (and account usage in group traits)."""
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        handle_accounts=True,
        synchronized_properties=[
            "email",
            "usage.top_features",
            "usage.events_30d",
            "usage.score_30d",
            "audiences.first_time_shopper",
            "account.usage.events_30d",
        ],
        synchronized_account_segments=["ALL"],
        synchronized_account_properties=["domain", "usage.top_features"],
    )
    now = utcnow().strftime("%Y-%m-%dT%H:%M:%SZ")
    uses = [("export", "positive"), ("export", "NEGATIVE"), ("export", "Positive"), ("search", None)]
    await post_batch(
        client,
        {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"domain": "acme.io"}},
        *(
            {
                "type": "track",
                "userId": "u-1",
                "event": "Feature Used",
                "timestamp": now,
                "properties": {"feature": feature, **({"eventFlag": flag} if flag else {})},
            }
            for feature, flag in uses
        ),
        {
            "type": "identify",
            "userId": "u-1",
            "traits": {"email": "ada@example.com", "first_time_shopper": True},
            "context": {"personas": {"computation_class": "audience", "computation_key": "first_time_shopper"}},
        },
    )
    await drain(runtime)
    await send_all(runtime)

    identify = of_type(segment_api.messages, "identify")[-1]
    assert {
        key: identify["traits"][key]
        for key in (
            "usage_top_features",
            "usage_events_30d",
            "usage_score_30d",
            "audiences_first_time_shopper",
            "account_usage_events_30d",
        )
    } == {
        "usage_top_features": ["export", "search"],
        "usage_events_30d": 4,
        "usage_score_30d": 1,
        "audiences_first_time_shopper": True,
        "account_usage_events_30d": 4,
    }
    group = of_type(segment_api.messages, "group")[-1]
    assert group["traits"]["usage_top_features"] == ["export", "search"]
