"""Browser write keys in the admin API: create (the key shown once), list (masked), revoke.

A write key is what a website's analytics.js sends with: public, good on /v1 only (inbound/auth.py), and
kept as its hash (inbound/write_keys.py, the table's owner). Each docstring is its OpenAPI entry.
"""

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.core.logs import get_logger
from connector.core.spec import has_nul
from connector.inbound import write_keys
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, json_body, runtime_of

MAX_BODY = 16 * 1024
MAX_NAME = 200
MAX_ORIGINS = 100
# What a browser sends as Origin: a scheme, a host and maybe a port; no path, no trailing slash.
ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")
log = get_logger()


def _checked(document: Any) -> tuple[str, list[str]]:
    if not isinstance(document, dict):
        raise ApiError(400, "the body must be a JSON object with name and, optionally, allowed_origins", field="body")
    unknown = sorted(set(document) - {"name", "allowed_origins"})
    if unknown:
        raise ApiError(400, f"unknown field {unknown[0]!r}; expected name, allowed_origins", field=unknown[0])
    name = document.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME or has_nul(name):
        raise ApiError(400, f"name must be a non-empty string of at most {MAX_NAME} characters", field="name")
    origins = document.get("allowed_origins") or []
    if not isinstance(origins, list) or len(origins) > MAX_ORIGINS:
        raise ApiError(400, f"allowed_origins must be a list of at most {MAX_ORIGINS} origins", field="allowed_origins")
    for origin in origins:
        if not isinstance(origin, str) or not ORIGIN.match(origin):
            raise ApiError(
                400,
                f"{origin!r} is not an origin: write it as the browser sends it, https://shop.example[:port]",
                field="allowed_origins",
            )
    return name.strip(), list(dict.fromkeys(origins))


@requires_admin
async def create_write_key(request: Request) -> JSONResponse:
    """
    summary: Create a browser write key for analytics.js; the answer is the only time the key is shown in full
    description: >-
      A write key is accepted on /v1 only (never on /segment or this API), and never for a `delete`. With
      `allowed_origins`, a call whose Origin is not listed is refused (403).
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [name]
            properties:
              name: {type: string, maxLength: 200}
              allowed_origins: {type: array, items: {type: string, example: "https://shop.example"}}
    responses:
      201: {description: "the key, in full this once", schema: {$ref: "#/components/schemas/WriteKey"}}
      400: {description: "invalid name or allowed_origins; `field` names it"}
    """
    document = await json_body(request, MAX_BODY)
    name, origins = _checked(document)
    row, key = await write_keys.create(runtime_of(request).engine, name, origins)
    log.info("write_key.create", write_key_id=row["id"], allowed_origins=len(origins))
    return JSONResponse({**row, "key": key}, status_code=201)


@requires_admin
async def list_write_keys(request: Request) -> JSONResponse:
    """
    summary: The active browser write keys, masked to their last characters
    responses:
      200: {description: "the keys", schema: {$ref: "#/components/schemas/WriteKeys"}}
    """
    return JSONResponse({"write_keys": await write_keys.active(runtime_of(request).engine)})


@requires_admin
async def revoke_write_key(request: Request) -> Response:
    """
    summary: Revoke a browser write key; the next call with it is refused (401)
    responses:
      204: {description: "revoked"}
      404: {description: "no active write key with this id"}
    """
    key_id = request.path_params["key_id"]
    if not await write_keys.revoke(runtime_of(request).engine, key_id):
        raise ApiError(404, "no active write key with this id")
    log.info("write_key.revoke", write_key_id=key_id)
    return Response(status_code=204)


routes = [
    Route("/api/write-keys", list_write_keys, methods=["GET"]),
    Route("/api/write-keys", create_write_key, methods=["POST"]),
    Route("/api/write-keys/{key_id:id}", revoke_write_key, methods=["DELETE"]),
]
