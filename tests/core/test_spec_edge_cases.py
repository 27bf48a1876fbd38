"""The Spec's limits and what a sender is told about a refused message, pinned where mutation
testing found spec.py loose: the JSON depth limit, the 255-character event name, ids sent as
numbers, generated message ids, and the `rejected` entries of a batch, word for word.
"""

import hashlib
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.core import spec
from tests.support.app import basic_auth

# message -> (field, status, message) of its `rejected` entry, written out by hand
REFUSALS = [
    (
        {"type": "unknown", "userId": "u1"},
        ("type", 501, "unknown message type 'unknown'; expected one of identify, track, page, screen, group, alias"),
    ),
    ({"type": "track", "userId": "u1"}, ("event", 400, "event is required for a track call")),
    ({"type": "group", "userId": "u1"}, ("groupId", 400, "groupId is required for a group call")),
    (
        {"type": "identify", "userId": "null"},
        (
            "userId",
            400,
            "userId or anonymousId is required (and must not be a placeholder such as 'null' or 'undefined')",
        ),
    ),
    ({"type": "identify", "userId": "u1", "traits": ["a"]}, ("traits", 400, "traits must be a JSON object")),
    ("not an object", ("body", 400, "each message must be a JSON object")),
]


async def test_each_rejected_message_is_listed_with_its_field_status_and_reason(client, runtime):
    batch = [{"type": "identify", "userId": "ok", "messageId": "ok"}] + [message for message, _ in REFUSALS]
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": batch})
    assert response.status_code == 200, response.text
    assert response.json()["rejected"] == [
        {"index": index, "field": field, "status": status, "message": message}
        for index, (_, (field, status, message)) in enumerate(REFUSALS, start=1)
    ]


async def test_an_unknown_type_alone_is_501_naming_the_types_there_are(client, runtime):
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": [{"type": "login", "userId": "u"}]})
    assert response.status_code == 400
    [entry] = response.json()["rejected"]
    assert entry == {
        "index": 0,
        "field": "type",
        "status": 501,
        "message": "unknown message type 'login'; expected one of identify, track, page, screen, group, alias",
    }


# --- limits and id normalisation, straight on the pure functions -----------------------------

RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def nested(levels, container):
    """A JSON value `levels` deep: 1 is a scalar, 2 a container holding one, and so on."""
    value: Any = "leaf"
    for _ in range(levels - 1):
        value = {"k": value} if container == "object" else [value]
    return value


@pytest.mark.parametrize("container", ["object", "array"])
@pytest.mark.parametrize("limit", [1, 2, 3, 8])
def test_json_exactly_at_the_depth_limit_passes_and_one_level_more_is_refused(container, limit):
    spec.check_depth(nested(limit, container), limit)
    with pytest.raises(spec.SpecError) as refused:
        spec.check_depth(nested(limit + 1, container), limit)
    assert (refused.value.field, refused.value.status) == ("body", 400)
    assert refused.value.message == f"JSON nested deeper than the limit of {limit} levels"


def test_depth_counts_objects_and_arrays_alike_when_mixed():
    spec.check_depth({"a": [{"b": [1]}]}, 5)
    with pytest.raises(spec.SpecError):
        spec.check_depth({"a": [{"b": [1]}]}, 4)


def test_an_event_name_of_255_characters_is_accepted_and_256_refused():
    accepted = spec.normalise_message({"type": "track", "userId": "u", "event": "e" * 255}, RECEIVED)
    assert accepted["event"] == "e" * 255
    with pytest.raises(spec.SpecError) as refused:
        spec.normalise_message({"type": "track", "userId": "u", "event": "e" * 256}, RECEIVED)
    assert (refused.value.field, refused.value.status, refused.value.message) == (
        "event",
        400,
        "event is longer than 255 characters",
    )


@pytest.mark.parametrize(
    "message,field,stored",
    [
        ({"type": "group", "userId": "u", "groupId": 123}, "groupId", "123"),
        ({"type": "group", "userId": "u", "groupId": 12.5}, "groupId", "12.5"),
        ({"type": "group", "userId": "u", "groupId": " g-1 "}, "groupId", " g-1 "),
        ({"type": "alias", "userId": "u", "previousId": 42}, "previousId", "42"),
    ],
)
def test_a_numeric_group_or_previous_id_is_stored_as_a_string(message, field, stored):
    assert spec.normalise_message(message, RECEIVED)[field] == stored


@pytest.mark.parametrize("value", [True, False, {"id": "g-1"}, ["g-1"], None, "null", ""])
def test_a_group_id_that_is_not_an_id_is_refused_naming_it(value):
    with pytest.raises(spec.SpecError) as refused:
        spec.normalise_message({"type": "group", "userId": "u", "groupId": value}, RECEIVED)
    assert (refused.value.field, refused.value.message) == ("groupId", "groupId is required for a group call")


# A generated id is stored with the message and sent to Segment as its messageId: a retry must
# get the same id from every version of the connector, or a retry that straddles an upgrade is
# taken for a new message. The recipe, checkable with `printf '%s' '<json>' | sha256sum`: the
# first 40 hex digits of the SHA-256 of the message as compact JSON with sorted keys, plus
# "batchSentAt" when the message came in a batch dated by its sender.
@pytest.mark.parametrize(
    "batch_sent_at,hashed,expected",
    [
        (
            None,
            '{"timestamp":"2024-05-01T00:00:00Z","type":"identify","userId":"u-1"}',
            "auto-ba094c6590e2751d189ff0d734283a847b8fafd2",
        ),
        (
            "2024-05-01T00:00:05Z",
            '{"batchSentAt":"2024-05-01T00:00:05Z","timestamp":"2024-05-01T00:00:00Z","type":"identify","userId":"u-1"}',
            "auto-dafac1f43bcd1de384255f7a4bac8259c08617c0",
        ),
    ],
    ids=["dated by its timestamp", "dated by its batch"],
)
def test_a_generated_message_id_is_the_same_in_every_version_so_a_retry_after_an_upgrade_is_recognised(
    batch_sent_at, hashed, expected
):
    assert "auto-" + hashlib.sha256(hashed.encode()).hexdigest()[:40] == expected  # the recipe, written out
    message = {"userId": "u-1", "type": "identify", "timestamp": "2024-05-01T00:00:00Z"}
    assert spec.normalise_message(message, RECEIVED, sent_at=batch_sent_at)["messageId"] == expected


def test_a_generated_message_id_is_auto_and_40_hex_characters():
    dated = spec.normalise_message({"type": "identify", "userId": "u", "timestamp": "2024-05-01T00:00:00Z"}, RECEIVED)
    undated = spec.normalise_message({"type": "identify", "userId": "u"}, RECEIVED)
    for message in (dated, undated):
        prefix, _, digest = message["messageId"].partition("-")
        assert prefix == "auto" and len(digest) in (40, 32) and int(digest, 16) >= 0
    assert len(dated["messageId"]) == len("auto-") + 40
