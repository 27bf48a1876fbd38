"""Every admin API route that reads a body answers one way when the body is not JSON or is too large: 400, the
error shape naming the body, and the limit in bytes when that was the problem."""

import pytest

from tests.support.app import admin_auth

# (method, path, the most bytes its body may have)
ROUTES_WITH_BODIES = [
    ("PUT", "/api/settings", 64 * 1024),
    ("POST", "/api/segments", 64 * 1024),
    ("POST", "/api/segments/preview", 64 * 1024),
    ("POST", "/api/write-keys", 16 * 1024),
    ("POST", "/api/dead-letters/replay", 256 * 1024),
    ("POST", "/api/segment-workspace", 64_000),
    ("POST", "/api/segment-workspace/sources", 64_000),
]


@pytest.mark.parametrize(("method", "path", "limit"), ROUTES_WITH_BODIES)
@pytest.mark.parametrize("body", [b"{not json", b'{"a": 1', b"\xff\xfe"])
async def test_a_body_that_is_not_json_is_400_naming_the_body(client, method, path, limit, body):
    response = await client.request(method, path, headers=admin_auth(), content=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["field"] == "body" and answer["message"].startswith("malformed body: ")


@pytest.mark.parametrize(("method", "path", "limit"), ROUTES_WITH_BODIES)
async def test_a_body_over_the_route_s_limit_is_400_naming_the_limit(client, method, path, limit):
    too_big = b'{"padding": "' + b"x" * limit + b'"}'
    response = await client.request(method, path, headers=admin_auth(), content=too_big)
    assert response.status_code == 400
    assert response.json() == {"message": f"malformed body: it exceeds the limit of {limit} bytes", "field": "body"}
