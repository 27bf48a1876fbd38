"""Every admin route needs the admin token: each /api/... route and /metrics, found by walking the
app's own routes (mounts included, every method they answer), refuses a request without the
token or with a wrong one, and changes nothing.
"""

import base64
import re
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.routing import Mount, Route

from connector.core.models import Segment
from connector.web.app import create_app
from tests.support.app import ADMIN_TOKEN, API_KEY, admin_auth, make_env

PARAMETER = re.compile(r"{[^}]+}")


def guarded_routes(routes: list[Any], prefix: str = "") -> list[tuple[str, str]]:
    """(method, path) of every /api/... and /metrics endpoint, path parameters filled with 1."""
    found = []
    for route in routes:
        if isinstance(route, Mount):
            found += guarded_routes(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            path = prefix + PARAMETER.sub("1", route.path_format)
            if path.startswith("/api/") or path == "/metrics":
                found += [(method, path) for method in sorted(route.methods or ())]
    return found


# Enumerated from the app itself, so a route added later is checked too (no database is opened here).
ROUTES = guarded_routes(create_app(make_env("sqlite+aiosqlite:///unused.db")).routes)
REFUSED_HEADERS = {
    "no-authorization": {},
    "wrong-token": admin_auth("wrong-token"),
    "empty-bearer": {"Authorization": "Bearer "},
    "token-prefix": admin_auth(ADMIN_TOKEN[:-1]),
    "token-with-a-suffix": admin_auth(ADMIN_TOKEN + "x"),
    "token-as-basic": {"Authorization": "Basic " + base64.b64encode(f"{ADMIN_TOKEN}:".encode()).decode()},
    "api-key-as-bearer": admin_auth(API_KEY),
}


def test_the_enumeration_finds_the_admin_routes_written_here():
    # A hand-written sample: if walking the routes stopped finding them, every test below would pass vacuously.
    for expected in [
        ("GET", "/metrics"),
        ("HEAD", "/metrics"),
        ("GET", "/api/settings"),
        ("PUT", "/api/settings"),
        ("POST", "/api/dead-letters/replay"),
        ("GET", "/api/dead-letters"),
        ("DELETE", "/api/segments/1"),
        ("PUT", "/api/segments/1"),
        ("POST", "/api/segments"),
        ("GET", "/api/users/1/events"),
        ("POST", "/api/api-key/rotate"),
        ("GET", "/api/openapi.json"),
    ]:
        assert expected in ROUTES, expected


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{method} {path}" for method, path in ROUTES])
async def test_every_admin_route_answers_401_without_the_admin_token_or_with_a_wrong_one(client, runtime, method, path):
    api_key = await runtime.settings.api_key()
    body = {"name": "Pros", "entity": "user", "rule": {"all": []}, "handle_accounts": True, "ids": [1]}
    for refused, headers in REFUSED_HEADERS.items():
        response = await client.request(
            method, path, headers={**headers, "Content-Type": "application/json"}, json=body
        )
        assert response.status_code == 401, (refused, response.text)
        assert response.headers["www-authenticate"] == "Bearer", refused
        if method != "HEAD":
            assert "admin token" in response.json()["message"], refused
    # Nothing changed: no settings saved, the API key not rotated, no segment created.
    assert (await runtime.settings.current_version())[0] == 0
    assert await runtime.settings.api_key() == api_key == API_KEY
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(Segment.__table__)) == 0


async def test_the_admin_token_opens_what_the_refused_requests_could_not(client):
    # The 401s above are the guard's: with the token the same routes answer.
    assert (await client.get("/metrics", headers=admin_auth())).status_code == 200
    assert (await client.post("/api/dead-letters/replay", headers=admin_auth(), json={})).status_code in (200, 409)
    assert (await client.get("/api/settings", headers=admin_auth())).status_code == 200
