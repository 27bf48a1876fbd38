"""The transport encodes each message once and assembles the body from those bytes: what goes on the wire is
byte for byte what segment-analytics-python itself would send, so the sizes measured are the sizes sent."""

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from segment.analytics import request as segment_request

from connector.outbound import transport
from tests.support.fake_segment import FakeSegment

SENT_AT = "2026-11-23T02:03:28.184730+00:00"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=12,
)
messages = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["identify", "track", "group"]), "messageId": st.text(min_size=1)},
        optional={"userId": st.text(), "traits": st.dictionaries(st.text(), json_values, max_size=6)},
    ),
    max_size=8,
)


def library_body(batch: list[dict[str, Any]], write_key: str) -> str:
    """What segment_request.post serializes (its code: the body is its kwargs, then writeKey)."""
    return json.dumps(
        {"batch": batch, "sentAt": SENT_AT, "writeKey": write_key}, cls=segment_request.DatetimeSerializer
    )


@settings(max_examples=200, deadline=None)
@given(messages, st.text(min_size=1, max_size=40))
def test_the_body_assembled_from_encoded_messages_is_the_librarys_body(batch, write_key):
    encoded = [transport.encode(message) for message in batch]
    body = transport.request_body(encoded, SENT_AT, write_key)
    assert body == library_body(batch, write_key)
    # Its size is what the batching counts: the envelope, each message, a separator between two.
    envelope = len(library_body([], write_key).encode())
    assert len(body.encode()) == envelope + sum(map(len, encoded)) + 2 * max(len(encoded) - 1, 0)
    assert all(len(text) == len(text.encode()) for text in encoded)  # ASCII: a character is a byte


def test_the_request_on_the_wire_is_the_one_the_library_sends():
    batch = [
        {"type": "identify", "userId": "zoë", "messageId": "m-1", "traits": {"name": "Zoë Ünal", "score": 1.5}},
        {"type": "track", "userId": "u-2", "messageId": "m-2", "event": "Signed Up 🎉", "properties": {"n": None}},
    ]
    with FakeSegment(write_key="wk-1") as fake:
        segment_request.post("wk-1", host=fake.url, batch=batch, sentAt=SENT_AT)
        transport.post_encoded("wk-1", fake.url, [transport.encode(m) for m in batch], SENT_AT, 15)
        (library_headers, library_raw), (our_headers, our_raw) = fake.raw_requests
    assert our_raw == library_raw
    for name in ("content-type", "user-agent", "authorization", "content-length"):
        assert our_headers[name] == library_headers[name]
    assert "content-encoding" not in our_headers
    assert len(fake.bodies) == 2


def test_segments_refusal_is_the_librarys_api_error_with_its_retry_after():
    with FakeSegment(write_key="wk-1") as fake:
        fake.fail(429, count=1, retry_after=7)
        try:
            transport.post_encoded("wk-1", fake.url, [transport.encode({"type": "track"})], SENT_AT, 15)
        except segment_request.APIError as error:
            failure = transport.classify(error)
        else:
            raise AssertionError("a 429 was taken as accepted")
    assert (failure.status, failure.retry, failure.retry_after) == (429, True, 7)
    assert failure.reason == "HTTP 429: injected 429"
