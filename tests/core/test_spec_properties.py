"""Properties: Spec parsing for any message, and identity resolution for any delivery order."""

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col

from connector.core import spec
from connector.core.models import Event, User, UserIdentifier
from connector.inbound.writer import journal_row
from connector.service.batch import process_batch
from tests.support.database import append_to_journal, empty_tables

RECEIVED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
REQUIRED = {"track": ["event"], "group": ["groupId"], "alias": ["previousId", "userId"]}

# --- parsing ----------------------------------------------------------------

# What a JSON body can carry (no lone surrogates), less NUL: PostgreSQL cannot store it, so the Spec refuses it.
storable = st.characters(codec="utf-8", exclude_characters="\x00")
ids = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda value: spec.clean_id(value) == value
)
json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(storable, max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(storable, max_size=8), inner, max_size=3),
    max_leaves=8,
)
objects = st.dictionaries(st.text(storable, min_size=1, max_size=10), json_values, max_size=4)
instants = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))


@st.composite
def valid_messages(draw: st.DrawFn) -> dict[str, Any]:
    message_type = draw(st.sampled_from(spec.MESSAGE_TYPES))
    message: dict[str, Any] = {"type": message_type}
    who = draw(st.sampled_from(["userId", "anonymousId", "both"]))
    if who != "anonymousId" or message_type == "alias":
        message["userId"] = draw(ids)
    if who != "userId":
        message["anonymousId"] = draw(ids)
    if message_type == "track":
        message["event"] = draw(st.text(storable, min_size=1, max_size=50).filter(str.strip))
    elif message_type == "group":
        message["groupId"] = draw(ids)
    elif message_type == "alias":
        message["previousId"] = draw(ids)
    elif message_type in ("page", "screen"):
        message["name"] = draw(st.none() | st.text(storable, max_size=30))
    for field in ("traits", "properties", "context"):
        if draw(st.booleans()):
            message[field] = draw(objects)
    if draw(st.booleans()):
        message["messageId"] = draw(ids)
    if draw(st.booleans()):
        message["timestamp"] = spec.format_timestamp(draw(instants))
    return message


def snake_cased(message: dict[str, Any]) -> dict[str, Any]:
    camel_to_snake = {camel: snake for snake, camel in spec.SNAKE_TO_CAMEL.items()}
    return {camel_to_snake.get(key, key): value for key, value in message.items()}


@settings(max_examples=200, deadline=None)
@given(valid_messages())
def test_any_valid_message_normalises(message):
    normalised = spec.normalise_message(message, RECEIVED)
    for key in ("type", "userId", "anonymousId", "event", "groupId", "previousId"):
        assert normalised.get(key) == message.get(key)
    for key in ("traits", "properties", "context"):
        assert normalised.get(key) == message.get(key)
    assert normalised["messageId"] == message.get("messageId", normalised["messageId"])
    assert normalised["receivedAt"] == spec.format_timestamp(RECEIVED)
    expected_time = spec.parse_timestamp(message["timestamp"], "t") if "timestamp" in message else RECEIVED
    # A time after receivedAt (a client clock in the future) counts as receivedAt.
    assert spec.parse_timestamp(normalised["timestamp"], "timestamp") == min(expected_time, RECEIVED)
    # Normalising is idempotent: the journal payload is itself a valid message.
    assert spec.normalise_message(normalised, RECEIVED) == normalised


@settings(max_examples=200, deadline=None)
@given(valid_messages())
def test_snake_case_keys_normalise_like_camel_case(message):
    message.setdefault("messageId", "m-1")  # without one, an undated message gets a unique id each time
    assert spec.normalise_message(snake_cased(message), RECEIVED) == spec.normalise_message(message, RECEIVED)


@settings(max_examples=200, deadline=None)
@given(valid_messages(), st.data())
def test_a_message_missing_a_required_field_is_refused_naming_it(message, data):
    if message["type"] in REQUIRED and data.draw(st.booleans()):
        field = data.draw(st.sampled_from(REQUIRED[message["type"]]))
        broken = {key: value for key, value in message.items() if key != field}
        # no identity left at all: the identity rule names userId first
        expected = "userId" if field == "userId" and "anonymousId" not in broken else field
    else:
        broken = {key: value for key, value in message.items() if key not in ("userId", "anonymousId")}
        expected = "userId"
    if expected != "event" and data.draw(st.booleans()):  # a placeholder id is as good as none
        broken[expected] = data.draw(st.sampled_from(["undefined", "null", " ", "'None'", '"0"', "[object Object]"]))
    with pytest.raises(spec.SpecError) as refused:
        spec.normalise_message(broken, RECEIVED)
    assert refused.value.field == expected
    assert refused.value.status == 400


@settings(max_examples=200, deadline=None)
@given(valid_messages(), instants, st.randoms())
def test_a_generated_message_id_is_stable_for_a_dated_message(message, later, random):
    message.pop("messageId", None)
    message.setdefault("timestamp", "2024-05-31T10:00:00.000Z")
    first = spec.normalise_message(message, RECEIVED)["messageId"]
    keys = list(message)
    random.shuffle(keys)
    reordered = snake_cased({key: message[key] for key in keys})
    assert spec.normalise_message(reordered, later)["messageId"] == first
    changed = {**message, "context": {**message.get("context", {}), "__probe": 1}}
    assert spec.normalise_message(changed, RECEIVED)["messageId"] != first
    another_time = {**message, "timestamp": "2024-05-31T10:00:00.001Z"}
    assert spec.normalise_message(another_time, RECEIVED)["messageId"] != first


@settings(max_examples=100, deadline=None)
@given(valid_messages())
def test_two_identical_undated_messages_without_message_id_are_two_messages(message):
    message.pop("messageId", None)
    message.pop("timestamp", None)
    first = spec.normalise_message(dict(message), RECEIVED)["messageId"]
    assert spec.normalise_message(dict(message), RECEIVED)["messageId"] != first


@pytest.mark.parametrize("time_field", ["timestamp", "originalTimestamp", "sentAt"])
def test_any_time_the_sender_gave_makes_the_generated_id_repeatable(time_field):
    message = {"type": "track", "userId": "e1", "event": "Daily Login", time_field: "2024-05-31T10:00:00Z"}
    first = spec.normalise_message(dict(message), RECEIVED)["messageId"]
    assert spec.normalise_message(dict(message), RECEIVED)["messageId"] == first
    next_day = {**message, time_field: "2024-06-01T10:00:00Z"}
    assert spec.normalise_message(next_day, RECEIVED)["messageId"] != first


def test_a_batch_sent_at_dates_the_messages_it_carries():
    message = {"type": "track", "userId": "e1", "event": "Daily Login"}
    first = spec.normalise_message(dict(message), RECEIVED, sent_at="2024-05-31T10:00:00Z")["messageId"]
    assert spec.normalise_message(dict(message), RECEIVED, sent_at="2024-05-31T10:00:00Z")["messageId"] == first
    assert spec.normalise_message(dict(message), RECEIVED, sent_at="2024-06-01T10:00:00Z")["messageId"] != first


def test_a_timestamp_in_the_future_counts_as_received_at():
    message = {"type": "identify", "userId": "u", "timestamp": "2099-01-01T00:00:00Z", "traits": {"plan": "pro"}}
    assert spec.normalise_message(message, RECEIVED)["timestamp"] == "2024-06-01T12:00:00.000000Z"


@settings(max_examples=100, deadline=None)
@given(instants, st.integers(0, 10**7), st.integers(-(10**8), 10**8))
def test_clock_skew_rule(original, delay_ms, skew_ms):
    message = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "originalTimestamp": spec.format_timestamp(original),
        "sentAt": spec.format_timestamp(original + timedelta(milliseconds=delay_ms)),
    }
    received = original + timedelta(milliseconds=delay_ms + skew_ms)
    normalised = spec.normalise_message(message, received)
    assert spec.parse_timestamp(normalised["timestamp"], "t") == received - timedelta(milliseconds=delay_ms)


# --- ids made only of zeros ------------------------------------------------
# Segment blocks "all zeros" as an identifier value: the nil UUID, and any id of zeros (dashes between them or not)
# is what a device without an advertising id or a broken SDK sends for everyone.

zeros = st.text(alphabet="0-", min_size=1, max_size=60).filter(lambda text: "0" in text)


@settings(max_examples=300, deadline=None)
@given(zeros, st.sampled_from(["{}", " {} ", "'{}'", '"{}"']))
def test_an_id_made_only_of_zeros_and_dashes_is_never_an_identifier(text, wrapping):
    value = wrapping.format(text)
    assert spec.is_bogus_id(value) and spec.clean_id(value) is None
    with pytest.raises(spec.SpecError) as refused:
        spec.normalise_message({"type": "identify", "userId": value, "anonymousId": value}, RECEIVED)
    assert refused.value.field == "userId"


@pytest.mark.parametrize(
    "value",
    ["0", "0000", "-0", "0-", "00000000000000000000000000000000", "00000000-0000-0000-0000-000000000000"],
)
def test_the_nil_uuid_and_other_zeros_are_refused(value):
    assert spec.clean_id(value) is None
    normalised = spec.normalise_message(
        {"type": "track", "userId": "u-1", "anonymousId": value, "event": "E"}, RECEIVED
    )
    assert normalised["anonymousId"] == value  # kept in the message as sent, but no identifier


# A digit or a letter besides the zeros makes a real id: counters, padded numbers, UUIDs that are not nil.
@pytest.mark.parametrize(
    "value",
    ["0a", "10", "01", "00000001", "-0-1", "1-0", "O0", "00000000-0000-0000-0000-000000000001"],
)
def test_ids_with_anything_besides_zeros_and_dashes_stay_identifiers(value):
    assert not spec.is_bogus_id(value) and spec.clean_id(value) == value


# --- identity resolution: delivery order does not matter ---------------------

PEOPLE = 3
TIMES = ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"]


@st.composite
def journeys(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Messages of a few people; each anonymousId belongs to one person only, so nothing conflicts."""
    messages = []
    for index in range(draw(st.integers(1, 12))):
        person = draw(st.integers(1, PEOPLE))
        user_id, anonymous_id = f"u{person}", f"a{person}-{draw(st.integers(0, 1))}"
        who = draw(st.sampled_from(["user", "anonymous", "both"]))
        ids = (
            {"userId": user_id}
            if who == "user"
            else {"anonymousId": anonymous_id}
            if who == "anonymous"
            else {"userId": user_id, "anonymousId": anonymous_id}
        )
        kind = draw(st.sampled_from(["identify", "identify", "track", "alias"]))
        message: dict[str, Any] = {"messageId": f"m{index}", "timestamp": draw(st.sampled_from(TIMES))}
        if kind == "alias":
            message.update(type="alias", userId=user_id, previousId=anonymous_id)
        elif kind == "track":
            message.update(type="track", event="E", **ids)
        else:
            traits = draw(
                st.dictionaries(
                    st.sampled_from(["plan", "seats", "city"]),
                    st.none() | st.integers(0, 3) | st.sampled_from(["x", "y"]),
                    max_size=3,
                )
            )
            message.update(type="identify", traits=traits, **ids)
        messages.append(message)
    return messages


async def profiles_after(runtime, messages: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    await empty_tables(runtime.engine, keep={"settings_versions", "credentials"})
    await append_to_journal(
        runtime.engine, [journal_row(spec.normalise_message(m, RECEIVED), RECEIVED, "segment") for m in messages]
    )
    changes = await process_batch(runtime.engine, await runtime.settings.current(), limit=100)
    assert changes.failed == 0
    async with runtime.engine.connect() as conn:
        claims: dict[int, set[tuple[str, str]]] = {}
        for row in await conn.execute(
            sa.select(col(UserIdentifier.user_id), col(UserIdentifier.kind), col(UserIdentifier.value))
        ):
            claims.setdefault(row.user_id, set()).add((row.kind, row.value))
        events: dict[int, set[str]] = {}
        for row in await conn.execute(sa.select(col(Event.user_id), col(Event.message_id))):
            events.setdefault(row.user_id, set()).add(row.message_id)
        traits = dict((await conn.execute(sa.select(col(User.id), col(User.traits)))).all())
    assert set(traits) == set(claims)  # no profile without an identifier
    return {
        (frozenset(claims[user]), tuple(sorted(traits[user].items(), key=repr)), frozenset(events.get(user, ())))
        for user in traits
    }


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
async def test_any_delivery_order_ends_in_the_same_profiles(runtime, data):
    messages = data.draw(journeys())
    shuffled = data.draw(st.permutations(messages))
    expected = await profiles_after(runtime, messages)
    assert await profiles_after(runtime, shuffled) == expected
    assert await profiles_after(runtime, list(reversed(messages))) == expected


any_dates = st.datetimes(
    timezones=st.sampled_from([None, UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
).map(datetime.isoformat)
anything = (
    json_values
    | any_dates
    | st.floats(allow_nan=False)
    | st.integers(-(2**63), 2**63 - 1)
    | st.sampled_from(spec.MESSAGE_TYPES)
    | st.text(st.sampled_from("\x00a"), max_size=3)
)
overrides = st.dictionaries(
    st.sampled_from(
        [
            "type",
            "userId",
            "user_id",
            "anonymousId",
            "event",
            "groupId",
            "previousId",
            "messageId",
            "timestamp",
            "sentAt",
            "originalTimestamp",
            "traits",
            "properties",
            "context",
            "integrations",
            "name",
        ]
    ),
    anything | st.dictionaries(st.text(st.sampled_from("\x00a"), max_size=2), anything),
    max_size=3,
)


@settings(max_examples=500, deadline=None)
@given(valid_messages(), overrides, st.none() | anything)
def test_any_json_object_normalises_or_is_refused_with_a_spec_error(message, changes, batch_sent_at):
    document = {**message, **changes}
    try:
        normalised = spec.normalise_message(document, RECEIVED, sent_at=batch_sent_at)
    except spec.SpecError as error:
        assert error.status in (400, 413, 501) and error.field
        return
    # What is accepted can be journaled and processed on both backends.
    for field in ("timestamp", "receivedAt"):
        spec.parse_timestamp(normalised[field], field)
    assert len(normalised["timestamp"]) == len(normalised["receivedAt"])
    assert isinstance(normalised["messageId"], str)
    assert "\\u0000" not in orjson.dumps(normalised).decode(), "PostgreSQL cannot store NUL in JSON"
