"""POST /segment: the Webhooks destination (classic: one message; Actions: a JSON array)."""

import gzip
import hashlib
import hmac
import json

import orjson
import pytest

from tests.support.app import admin_auth, basic_auth, drain
from tests.support.database import stored_counts
from tests.support.inbound_cases import assert_journey_stored, enable_accounts, journey

SECRET = "s3cret-shared-with-segment"


def signature(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


async def set_shared_secret(client) -> None:
    response = await client.put("/api/settings", headers=admin_auth(), json={"shared_secret": SECRET})
    assert response.status_code == 200, response.text


async def assert_nothing_stored_and_still_serving(client, runtime) -> None:
    assert set((await stored_counts(runtime)).values()) == {0}
    assert (await client.get("/healthz")).status_code == 200


async def test_every_call_type_one_message_per_request(client, runtime):
    await enable_accounts(client)
    for message in journey("ada"):
        response = await client.post("/segment", headers=basic_auth(), json=message)
        assert response.status_code == 200, (message["type"], response.text)
    await drain(runtime)
    await assert_journey_stored(client, "ada", "segment")


async def test_every_call_type_in_an_actions_array(client, runtime):
    await enable_accounts(client)
    response = await client.post("/segment", headers=basic_auth(), json=journey("bob"))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 7, "skipped": 0}
    await drain(runtime)
    await assert_journey_stored(client, "bob", "segment")


async def test_gzip_body(client, runtime):
    body = gzip.compress(orjson.dumps({"type": "identify", "userId": "gz", "traits": {"a": 1}}))
    response = await client.post("/segment", content=body, headers={**basic_auth(), "Content-Encoding": "gzip"})
    assert response.status_code == 200, response.text
    await drain(runtime)
    assert (await client.get("/api/users", params={"user_id": "gz"}, headers=admin_auth())).json()["traits"] == {"a": 1}


@pytest.mark.parametrize(
    "headers", [{}, basic_auth("wrong-key"), {"Authorization": "Basic !!!"}], ids=["missing", "wrong", "garbled"]
)
async def test_bad_key_is_401(client, runtime, headers):
    response = await client.post("/segment", headers=headers, json={"type": "identify", "userId": "u1"})
    assert response.status_code == 401
    await assert_nothing_stored_and_still_serving(client, runtime)


async def test_write_key_in_body_is_not_accepted_on_segment(client, runtime):
    # /segment is Webhooks' endpoint: Basic auth only (writeKey in the body is a /v1 convenience).
    response = await client.post("/segment", json={"type": "identify", "userId": "u1", "writeKey": runtime.api_key})
    assert response.status_code == 401
    await assert_nothing_stored_and_still_serving(client, runtime)


async def test_signed_single_message(client, runtime):
    await set_shared_secret(client)
    body = orjson.dumps({"type": "identify", "userId": "signed", "traits": {"a": 1}, "messageId": "m-signed"})
    response = await client.post("/segment", content=body, headers={**basic_auth(), "X-Signature": signature(body)})
    assert response.status_code == 200, response.text
    upper = await client.post(
        "/segment", content=body, headers={**basic_auth(), "X-Signature": signature(body).upper()}
    )
    assert upper.status_code == 200, upper.text
    assert (await stored_counts(runtime))["inbound_journal"] == 1


async def test_signed_actions_array_uses_the_first_element(client, runtime):
    await set_shared_secret(client)
    messages = [{"type": "track", "userId": "u1", "event": "A"}, {"type": "track", "userId": "u1", "event": "B"}]
    first = orjson.dumps(messages[0])
    response = await client.post(
        "/segment", content=orjson.dumps(messages), headers={**basic_auth(), "X-Signature": signature(first)}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2


@pytest.mark.parametrize(
    "sign",
    [
        None,
        lambda body: "",
        lambda body: "00" * 20,
        lambda body: signature(body, "another-secret"),
        lambda body: signature(body + b" "),
    ],
    ids=["missing", "empty", "zeros", "other-secret", "other-body"],
)
async def test_bad_signature_is_401(client, runtime, sign):
    await set_shared_secret(client)
    body = orjson.dumps({"type": "identify", "userId": "u1"})
    headers = basic_auth() if sign is None else {**basic_auth(), "X-Signature": sign(body)}
    response = await client.post("/segment", content=body, headers=headers)
    assert response.status_code == 401, response.text
    assert response.json()["field"] == "X-Signature"
    await assert_nothing_stored_and_still_serving(client, runtime)


# An Actions batch as Segment sends it: a JSON array whose raw bytes (with spaces) differ from
# its first element written compactly, which is what Segment signs.
ACTIONS_BATCH = [
    {"type": "identify", "userId": "arr-1", "traits": {"plan": "pro", "city": "Zürich"}},
    {"type": "track", "userId": "arr-1", "event": "Order Completed", "properties": {"total": 3}},
]
ACTIONS_BODY = json.dumps(ACTIONS_BATCH, ensure_ascii=False).encode()
FIRST_ELEMENT = json.dumps(ACTIONS_BATCH[0], separators=(",", ":"), ensure_ascii=False).encode()


@pytest.mark.parametrize(
    "sign",
    [
        None,
        lambda: "",
        lambda: signature(FIRST_ELEMENT, "another-secret"),
        lambda: signature(ACTIONS_BODY, "another-secret"),
        lambda: signature(json.dumps(ACTIONS_BATCH[1], separators=(",", ":")).encode()),
        lambda: signature(FIRST_ELEMENT)[:-1],
        lambda: signature(FIRST_ELEMENT)[:20],
        lambda: signature(ACTIONS_BODY)[:-2],
        lambda: signature(FIRST_ELEMENT) + "0",
    ],
    ids=[
        "missing",
        "empty",
        "first-element-other-secret",
        "raw-body-other-secret",
        "second-element",
        "first-element-truncated-by-one",
        "first-element-truncated-to-half",
        "raw-body-truncated",
        "extended",
    ],
)
async def test_a_wrong_missing_or_truncated_signature_on_an_actions_array_is_401(client, runtime, sign):
    await set_shared_secret(client)
    headers = basic_auth() if sign is None else {**basic_auth(), "X-Signature": sign()}
    response = await client.post(
        "/segment", content=ACTIONS_BODY, headers={**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["field"] == "X-Signature"
    await drain(runtime)
    await assert_nothing_stored_and_still_serving(client, runtime)


@pytest.mark.parametrize("signed", [FIRST_ELEMENT, ACTIONS_BODY], ids=["first-element", "raw-body"])
async def test_an_actions_array_signed_over_its_first_element_or_its_raw_body_is_accepted(client, runtime, signed):
    await set_shared_secret(client)
    response = await client.post(
        "/segment",
        content=ACTIONS_BODY,
        headers={**basic_auth(), "Content-Type": "application/json", "X-Signature": signature(signed)},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "accepted": 2, "skipped": 0}
    await drain(runtime)
    assert (await stored_counts(runtime))["inbound_journal"] == 2
    profile = (await client.get("/api/users", params={"user_id": "arr-1"}, headers=admin_auth())).json()
    assert profile["traits"] == {"plan": "pro", "city": "Zürich"}


async def test_signature_not_required_without_a_shared_secret(client, runtime):
    response = await client.post(
        "/segment", headers={**basic_auth(), "X-Signature": "whatever"}, json={"type": "identify", "userId": "u1"}
    )
    assert response.status_code == 200


async def test_unknown_type_is_501(client, runtime):
    response = await client.post("/segment", headers=basic_auth(), json={"type": "merge", "userId": "u1"})
    assert response.status_code == 501
    assert response.json()["field"] == "type"
    await assert_nothing_stored_and_still_serving(client, runtime)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"type": "identify"}, "userId"),
        ({"type": "identify", "userId": "undefined", "anonymousId": "null"}, "userId"),
        ({"type": "track", "userId": "u1"}, "event"),
        ({"type": "group", "userId": "u1"}, "groupId"),
        ({"type": "alias", "userId": "u1"}, "previousId"),
    ],
)
async def test_spec_violation_is_400_naming_the_field(client, runtime, body, field):
    response = await client.post("/segment", headers=basic_auth(), json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    await assert_nothing_stored_and_still_serving(client, runtime)


async def test_malformed_json_is_400(client, runtime):
    response = await client.post("/segment", headers=basic_auth(), content=b"[{]")
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    await assert_nothing_stored_and_still_serving(client, runtime)


async def test_array_keeps_valid_messages_and_lists_rejected_ones(client, runtime):
    messages = [
        {"type": "track", "userId": "u1", "event": "A", "messageId": "a"},
        {"type": "page"},
        {"type": "merge", "userId": "u1"},
        {"type": "track", "userId": "u1", "event": "B", "messageId": "b"},
    ]
    response = await client.post("/segment", headers=basic_auth(), json=messages)
    assert response.status_code == 200
    assert response.json()["accepted"] == 2
    assert [(r["index"], r["field"]) for r in response.json()["rejected"]] == [(1, "userId"), (2, "type")]
    await drain(runtime)
    assert (await stored_counts(runtime))["events"] == 2


async def test_array_of_only_invalid_messages_is_400(client, runtime):
    response = await client.post("/segment", headers=basic_auth(), json=[{"type": "track", "userId": "u1"}])
    assert response.status_code == 400
    assert response.json()["rejected"][0]["field"] == "event"
    await assert_nothing_stored_and_still_serving(client, runtime)


async def test_more_than_2500_messages_is_400(client, runtime):
    messages = [{"type": "track", "userId": "u", "event": "E"}] * 2501
    response = await client.post("/segment", headers=basic_auth(), json=messages)
    assert response.status_code == 400
    assert response.json()["field"] == "batch"
    await assert_nothing_stored_and_still_serving(client, runtime)


async def test_body_over_the_limit_is_413(client, runtime):
    messages = [{"type": "track", "userId": "u", "event": "E", "properties": {"x": "y" * 30_000}}] * 20
    response = await client.post("/segment", headers=basic_auth(), json=messages)
    assert response.status_code == 413
    assert response.json()["limit"] == runtime.env.max_body_bytes
    await assert_nothing_stored_and_still_serving(client, runtime)
