"""Bearer ADMIN_TOKEN for the admin API."""

from collections.abc import Awaitable, Callable
from functools import wraps

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connector.core.credentials import secrets_match

Endpoint = Callable[[Request], Awaitable[Response]]


def requires_admin(endpoint: Endpoint) -> Endpoint:
    @wraps(endpoint)
    async def guarded(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets_match(token.strip(), request.app.state.runtime.admin_token):
            return JSONResponse(
                {"message": "a valid admin token is required (Authorization: Bearer <ADMIN_TOKEN>)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await endpoint(request)

    return guarded
