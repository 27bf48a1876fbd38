"""The admin API describes itself: GET /api/openapi.json is a valid OpenAPI 3 document covering every /api route."""

from openapi_spec_validator import validate
from starlette.routing import Route

from conftest import admin_auth

HTTP_METHODS = {"get", "put", "post", "delete", "patch"}


def documented_api_routes(app) -> set[tuple[str, str]]:
    """(path, method) of every /api route the app serves and offers to the schema, derived from app.routes."""
    return {(route.path_format, method.lower())
            for route in app.routes
            if isinstance(route, Route) and route.path.startswith("/api") and route.include_in_schema
            for method in route.methods or () if method.lower() in HTTP_METHODS}


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
