"""The admin API describes itself: GET /api/openapi.json is a valid OpenAPI 3 document covering every /api route;
and it writes every time one way."""

import re
from typing import Any

from openapi_spec_validator import validate
from starlette.routing import Route

from tests.support.app import admin_auth, basic_auth, drain

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def documented_api_routes(app) -> set[tuple[str, str]]:
    """(path, method) of every /api route the app serves and offers to the schema, derived from app.routes."""
    return {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path.startswith("/api") and route.include_in_schema
        for method in route.methods or ()
        if method.lower() in HTTP_METHODS
    }


async def test_openapi_document_is_valid_and_complete(app, client):
    response = await client.get("/api/openapi.json", headers=admin_auth())
    assert response.status_code == 200, response.text
    document = response.json()
    validate(document)
    assert document["openapi"].startswith("3.")

    expected = documented_api_routes(app)
    assert expected, "the app serves no /api routes"
    listed = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert expected - listed == set(), "routes missing from the OpenAPI document"
    for path, method in expected:
        assert document["paths"][path][method].get("summary"), f"{method.upper()} {path} has no summary"


async def test_openapi_document_needs_the_admin_token(client):
    assert (await client.get("/api/openapi.json")).status_code == 401
    assert (await client.get("/api/openapi.json", headers=admin_auth("wrong"))).status_code == 401


TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def timestamps(value: Any, path: str = "") -> list[tuple[str, Any]]:
    """(path, value) of every key that names a time (`*_at`, `timestamp`) anywhere in a JSON answer."""
    if isinstance(value, dict):
        return [
            found
            for key, item in value.items()
            for found in (
                [(f"{path}.{key}", item)]
                if (key.endswith("_at") or key == "timestamp") and item is not None
                else timestamps(item, f"{path}.{key}")
            )
        ]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in timestamps(item, f"{path}[{index}]")]
    return []


async def test_every_time_the_api_answers_has_one_format(client, runtime):
    await client.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    await client.post(
        "/v1/batch",
        headers=basic_auth(),
        json={
            "batch": [
                {
                    "type": "identify",
                    "userId": "u1",
                    "traits": {"plan": "pro"},
                    "timestamp": "2024-05-01T10:00:00+02:00",
                },
                {"type": "track", "userId": "u1", "event": "Used", "properties": {"feature": "export"}},
                {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"domain": "acme.com"}},
            ]
        },
    )
    await drain(runtime)
    await client.post(
        "/api/segments",
        headers=admin_auth(),
        json={"name": "Pro", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    )
    found = []
    for path in [
        "/api/users?user_id=u1",
        "/api/users/1/events",
        "/api/accounts?group_id=g1",
        "/api/segments",
        "/api/segments/1",
        "/api/users/1/usage",
        "/api/status",
        "/api/dead-letters",
    ]:
        response = await client.get(path, headers=admin_auth())
        assert response.status_code == 200, (path, response.text)
        found += [(path + where, value) for where, value in timestamps(response.json())]
    assert len(found) >= 12, found
    assert [(where, value) for where, value in found if not TIMESTAMP.match(str(value))] == []
