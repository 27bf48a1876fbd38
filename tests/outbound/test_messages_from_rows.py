"""The messages an outbox row owes, shaped from rows given as plain objects: no database.

outbound/messages.py and outbound/segment_events.py take what outbound/loading.py would have read
(rows.ClaimRows) and shape Segment's calls from it alone. The expected messages are written out
by hand; messageIds that digest their content are checked by their form.
"""

import re
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from connector import __version__
from connector.core.settings import ConnectorSettings
from connector.outbound import messages
from connector.outbound.messages import Owed, Skipped
from connector.outbound.rows import ClaimRows, Delivered
from connector.outbound.segment_events import Followed

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
OUR_MARKS = {
    "integrations": {"Webhooks": False},
    "context": {"integration": {"name": "hull-segment-connector", "version": __version__}},
}


def a_user(user_id: int = 1, traits: dict[str, Any] | None = None, account_id: int | None = None) -> Any:
    return SimpleNamespace(
        id=user_id,
        traits=traits if traits is not None else {"email": "ada@example.com", "plan": "pro", "age": 36},
        account_id=account_id,
        account_linked_at=None,
        updated_at=AT,
    )


def rows_of_ada(*segments: str) -> ClaimRows:
    """User 1, known as u-1 (and anon-1), in these user segments."""
    data = ClaimRows(users={1: a_user()}, user_ids={1: "u-1"}, anonymous_ids={1: "anon-1"})
    data.segment_names[("user", 1)] = set(segments)
    return data


def only(result: Owed | Skipped) -> dict[str, Any]:
    assert isinstance(result, Owed)
    [outgoing] = result.messages
    return outgoing.message


def a_transition(transition: str) -> Any:
    return SimpleNamespace(
        id=5,
        entity="user",
        entity_id=1,
        segment_id=3,
        segment_name="Paying",
        transition=transition,
        initial=False,
        retired=None,
        at=AT,
    )


def an_event(**fields: Any) -> Any:
    event = {
        "id": 9,
        "user_id": 1,
        "type": "track",
        "event": "Signed Up",
        "source": "v1",
        "message_id": "m-9",
        "timestamp": AT,
        "properties": {"plan": "pro"},
        "context": {"ip": "203.0.113.7", "integration": {"name": "someone-else"}},
        "integrations": {"Mixpanel": True, "Webhooks": True},
    }
    return SimpleNamespace(**(event | fields))


def test_an_identify_carries_the_synchronized_traits_and_the_users_segments_as_hull_segments() -> None:
    settings = ConnectorSettings(synchronized_segments=["Paying"], synchronized_properties=["email", "traits_plan"])

    result = messages.for_row(rows_of_ada("Paying", "Beta"), settings, "user", 1)

    message = only(result)
    assert re.fullmatch(r"hsc-identify-1-[0-9a-f]{32}", message.pop("messageId"))
    assert message == {
        "type": "identify",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "traits": {"email": "ada@example.com", "plan": "pro", "hull_segments": ["Beta", "Paying"]},
        **OUR_MARKS,
    }


def test_a_trait_named_as_the_segment_rules_name_it_is_read_and_sent_under_its_own_name() -> None:
    settings = ConnectorSettings(synchronized_segments=["Paying"], synchronized_properties=["traits.plan"])

    message = only(messages.for_row(rows_of_ada("Paying"), settings, "user", 1))

    assert message["traits"] == {"plan": "pro", "hull_segments": ["Paying"]}


def test_an_identify_of_the_same_traits_is_the_same_message_and_of_other_traits_another() -> None:
    settings = ConnectorSettings(synchronized_segments=["Paying"])
    first = only(messages.for_row(rows_of_ada("Paying"), settings, "user", 1))
    again = only(messages.for_row(rows_of_ada("Paying"), settings, "user", 1))
    moved = rows_of_ada("Paying")
    moved.users[1].traits["email"] = "ada@example.org"

    assert first["messageId"] == again["messageId"]
    assert only(messages.for_row(moved, settings, "user", 1))["messageId"] != first["messageId"]


def test_a_user_outside_the_synchronized_segments_is_skipped_with_the_reason() -> None:
    settings = ConnectorSettings(synchronized_segments=["Paying"])

    assert messages.for_row(rows_of_ada("Beta"), settings, "user", 1) == Skipped("not in synchronized segments")


def test_a_user_who_left_the_filter_gets_one_last_identify_with_no_segments() -> None:
    data = rows_of_ada("Beta")
    data.delivered["identify:1"] = Delivered("an older hash", ["Paying"], True, AT)
    settings = ConnectorSettings(synchronized_segments=["Paying"])

    result = messages.for_row(data, settings, "user", 1)

    assert isinstance(result, Owed)
    [outgoing] = result.messages
    assert outgoing.in_filter is False
    assert outgoing.message["traits"] == {"email": "ada@example.com", "hull_segments": ["Beta"]}


def test_a_group_names_the_account_by_its_group_id_and_carries_its_traits_and_segments() -> None:
    data = rows_of_ada("Paying")
    data.users[1] = a_user(account_id=7)
    data.accounts[7] = SimpleNamespace(
        id=7, group_id="g-7", domain="example.com", traits={"industry": "Software"}, updated_at=AT
    )
    data.segment_names[("account", 7)] = {"Big Accounts"}
    data.account_segments_known = True
    settings = ConnectorSettings(
        synchronized_segments=["Paying"],
        handle_accounts=True,
        synchronized_account_segments=["ALL"],
        synchronized_account_properties=["domain", "industry"],
    )

    result = messages.for_row(data, settings, "user", 1)

    assert isinstance(result, Owed)
    identify, group = (outgoing.message for outgoing in result.messages)
    assert identify["type"] == "identify"
    assert re.fullmatch(r"hsc-group-1-[0-9a-f]{32}", group.pop("messageId"))
    assert group == {
        "type": "group",
        "groupId": "g-7",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "traits": {"domain": "example.com", "industry": "Software", "hull_segments": ["Big Accounts"]},
        **OUR_MARKS,
    }


def test_a_track_is_forwarded_with_the_integrations_it_came_with_and_our_loop_flag() -> None:
    data = rows_of_ada("Paying")
    data.events[9] = an_event()
    settings = ConnectorSettings(synchronized_segments=["Paying"], send_events=["Signed Up"])

    assert only(messages.for_row(data, settings, "event", 9)) == {
        "type": "track",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "messageId": "m-9",
        "timestamp": "2026-01-02T03:04:05.000000Z",
        "event": "Signed Up",
        "properties": {"plan": "pro"},
        "context": {
            "ip": "203.0.113.7",
            "integration": {"name": "hull-segment-connector", "version": __version__},
        },
        "integrations": {"Mixpanel": True, "Webhooks": False},
    }


def test_a_page_and_a_screen_are_forwarded_under_their_name() -> None:
    data = rows_of_ada("Paying")
    data.events[9] = an_event(type="page", event="Pricing", properties={"name": "Pricing", "path": "/pricing"})
    data.events[10] = an_event(id=10, type="screen", event="Home", properties={"name": "Home"}, integrations={})
    settings = ConnectorSettings(synchronized_segments=["Paying"], send_events=["ALL"])

    page = only(messages.for_row(data, settings, "event", 9))
    screen = only(messages.for_row(data, settings, "event", 10))

    assert (page["type"], page["name"], page["properties"]) == (
        "page",
        "Pricing",
        {"name": "Pricing", "path": "/pricing"},
    )
    assert "event" not in page
    assert (screen["type"], screen["name"], screen["integrations"]) == ("screen", "Home", {"Webhooks": False})


def test_an_event_received_from_segment_is_not_sent_back_unless_forward_events_is_on() -> None:
    data = rows_of_ada("Paying")
    data.events[9] = an_event(source="segment")
    settings = ConnectorSettings(synchronized_segments=["Paying"], send_events=["ALL"])

    assert messages.for_row(data, settings, "event", 9) == Skipped("received from segment and forward_events is off")
    forwarding = settings.model_copy(update={"forward_events": True})
    assert only(messages.for_row(data, forwarding, "event", 9))["messageId"] == "m-9"


def test_a_user_entering_a_synchronized_segment_is_sent_segment_entered() -> None:
    data = rows_of_ada("Paying")
    data.transitions[5] = a_transition("entered")
    settings = ConnectorSettings(synchronized_segments=["Paying"], entered_exited_events=True)

    assert only(messages.for_row(data, settings, "transition", 5)) == {
        "type": "track",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "event": "Segment Entered",
        "messageId": "hsc-transition-5",
        "timestamp": "2026-01-02T03:04:05.000000Z",
        "properties": {"segment_name": "Paying", "segment_id": 3},
        **OUR_MARKS,
    }


def test_a_user_leaving_a_synchronized_segment_is_sent_segment_exited() -> None:
    data = rows_of_ada()
    data.transitions[5] = a_transition("exited")
    settings = ConnectorSettings(synchronized_segments=["Paying"], entered_exited_events=True)

    message = only(messages.for_row(data, settings, "transition", 5))

    assert (message["event"], message["messageId"]) == ("Segment Exited", "hsc-transition-5")


def test_entered_and_exited_are_not_sent_while_entered_exited_events_is_off() -> None:
    data = rows_of_ada("Paying")
    data.transitions[5] = a_transition("entered")
    settings = ConnectorSettings(synchronized_segments=["Paying"])

    assert messages.for_row(data, settings, "transition", 5) == Skipped("entered_exited_events is off")


def test_a_followed_segments_added_event_carries_the_mapped_properties() -> None:
    data = rows_of_ada("Paying")
    data.transitions[5] = a_transition("entered")
    data.segments["Paying"] = SimpleNamespace(id=3, name="Paying", entity="user")
    settings = ConnectorSettings(
        segment_events=[{"segment": "Paying", "added": "Became Paying", "properties": ["plan", "age"]}]
    )

    [added] = Followed(data, settings).for_row("transition", 5)

    message = added.message
    assert re.fullmatch(r"hsc-added-[0-9a-f]{32}", message.pop("messageId"))
    assert message == {
        "type": "track",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "event": "Became Paying",
        "timestamp": "2026-01-02T03:04:05.000000Z",
        "properties": {"plan": "pro", "age": 36},
        **OUR_MARKS,
    }


def test_a_followed_segments_removed_event_is_named_by_the_entry_and_dated_by_the_exit() -> None:
    data = rows_of_ada()
    data.transitions[5] = a_transition("exited")
    data.segments["Paying"] = SimpleNamespace(id=3, name="Paying", entity="user")
    settings = ConnectorSettings(
        segment_events=[{"segment": "Paying", "removed": "Left Paying", "properties": ["plan"]}]
    )

    [removed] = Followed(data, settings).for_row("transition", 5)

    message = removed.message
    assert re.fullmatch(r"hsc-removed-[0-9a-f]{32}", message.pop("messageId"))
    assert message == {
        "type": "track",
        "userId": "u-1",
        "anonymousId": "anon-1",
        "event": "Left Paying",
        "timestamp": "2026-01-02T03:04:05.000000Z",
        "properties": {"plan": "pro"},
        **OUR_MARKS,
    }
