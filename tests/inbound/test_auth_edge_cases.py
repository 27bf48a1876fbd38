"""Who may write to POST /segment, and what a refused sender is told: pinned where mutation testing
found the inbound auth loose (the Basic header's parsing, the X-Signature checks and their messages).
"""

import base64
import hashlib
import hmac

import orjson
import pytest

from tests.support.app import admin_auth, basic_auth
from tests.support.database import stored_counts

SECRET = "another-s3cret-shared-with-segment"
KEY = "test-api-key-0123456789"  # conftest's API key, written out
BODY = orjson.dumps({"type": "identify", "userId": "u-auth", "messageId": "m-auth"})


def encoded(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


async def post(client, headers):
    return await client.post("/segment", content=BODY, headers={"Content-Type": "application/json", **headers})


@pytest.mark.parametrize(
    "authorization",
    [
        f"Basic {encoded(KEY + ':')}",
        f"basic {encoded(KEY + ':')}",
        f"BASIC {encoded(KEY + ':')}",
        f"Basic {encoded(KEY + ':any password')}",
        f"Basic {encoded(KEY)}",
        f"Basic   {encoded(KEY + ':')}  ",
    ],
    ids=["usual", "lower-case-scheme", "upper-case-scheme", "password-ignored", "no-colon", "spaces"],
)
async def test_the_api_key_is_the_basic_user_name_whatever_the_scheme_case_or_password(client, runtime, authorization):
    response = await post(client, {"Authorization": authorization})
    assert response.status_code == 200, response.text
    assert (await stored_counts(runtime))["inbound_journal"] == 1


# Authorization header -> the message of the 401
REFUSED = [
    (None, "missing credentials: send the API key as the Basic auth user name"),
    ("Basic", "missing credentials: send the API key as the Basic auth user name"),
    ("Basic ", "missing credentials: send the API key as the Basic auth user name"),
    (f"Bearer {encoded(KEY + ':')}", "missing credentials: send the API key as the Basic auth user name"),
    (f"Basicx {encoded(KEY + ':')}", "missing credentials: send the API key as the Basic auth user name"),
    ("Basic not*base64", "missing credentials: send the API key as the Basic auth user name"),
    (
        f"Basic {encoded(KEY + ':')[:8]}*{encoded(KEY + ':')[8:]}",
        "missing credentials: send the API key as the Basic auth user name",
    ),
    (
        "Basic " + base64.b64encode(b"\xff\xfe:").decode(),
        "missing credentials: send the API key as the Basic auth user name",
    ),
    (f"Basic {encoded('wrong-key:')}", "invalid API key"),
    (f"Basic {encoded(':' + KEY)}", "invalid API key"),
]


@pytest.mark.parametrize(
    "authorization,message",
    REFUSED,
    ids=[
        "none",
        "scheme-only",
        "empty",
        "bearer",
        "other-scheme",
        "not-base64",
        "key-with-a-stray-character",
        "not-utf8",
        "wrong-key",
        "key-as-password",
    ],
)
async def test_a_refused_writer_gets_401_saying_why_and_nothing_is_stored(client, runtime, authorization, message):
    response = await post(client, {} if authorization is None else {"Authorization": authorization})
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert response.json()["message"] == message
    assert (await stored_counts(runtime))["inbound_journal"] == 0


async def set_secret(client):
    response = await client.put("/api/settings", headers=admin_auth(), json={"shared_secret": SECRET})
    assert response.status_code == 200, response.text


async def test_a_missing_signature_is_refused_naming_the_header(client, runtime):
    await set_secret(client)
    response = await post(client, basic_auth())
    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthorized",
        "field": "X-Signature",
        "message": "missing X-Signature header (a shared secret is configured)",
    }


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
async def test_an_empty_signature_counts_as_missing(client, runtime, value):
    await set_secret(client)
    response = await post(client, {**basic_auth(), "X-Signature": value})
    assert response.status_code == 401
    assert response.json()["message"] == "missing X-Signature header (a shared secret is configured)"


async def test_a_wrong_signature_is_refused_saying_it_does_not_match(client, runtime):
    await set_secret(client)
    response = await post(client, {**basic_auth(), "X-Signature": sign(BODY, "not-the-secret")})
    assert response.status_code == 401
    assert response.json() == {
        "code": "unauthorized",
        "field": "X-Signature",
        "message": "X-Signature does not match the body",
    }
    assert (await stored_counts(runtime))["inbound_journal"] == 0


@pytest.mark.parametrize("header", ["X-Signature", "x-signature", "X-SIGNATURE"])
async def test_the_signature_header_is_found_whatever_its_case_and_padding(client, runtime, header):
    await set_secret(client)
    response = await post(client, {**basic_auth(), header: f"  {sign(BODY).upper()} "})
    assert response.status_code == 200, response.text
