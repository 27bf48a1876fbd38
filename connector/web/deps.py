"""What the admin API's route modules share: the runtime, the one error shape, bodies and query parameters.

Every admin API error is `{"message": ..., **details}` (`field` names what was wrong, `errors` lists each
problem): a handler raises ApiError, and the app's exception handler (web/app.py) writes it; routes that no
path matches get the same shape (web/paths.py).
"""

from typing import Any, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from connector.core.runtime import Runtime
from connector.web import profiles


class ApiError(Exception):
    """An answer other than success: its status, its message, and the details the shape adds (`field`, ...)."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


async def api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return JSONResponse({"message": error.message, **error.details}, status_code=error.status)


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def json_body(request: Request, limit: int, optional: bool = False) -> Any:
    """The parsed body (`{}` for an empty one when the body is `optional`); ApiError 400 naming the body when it
    is larger than `limit` bytes or not JSON."""
    body = await request.body()
    if optional and not body:
        return {}
    if len(body) > limit:
        raise ApiError(400, f"malformed body: it exceeds the limit of {limit} bytes", field="body")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as problem:
        raise ApiError(400, f"malformed body: {problem}", field="body") from None


def one_query(request: Request, names: tuple[str, ...]) -> tuple[str | None, str]:
    """The first of these query parameters given. A NUL character is refused as inbound refuses it
    (PostgreSQL text cannot hold one, so no identifier has it, and the driver would fail: a 500)."""
    for name in names:
        value = request.query_params.get(name)
        if value:
            if "\x00" in value:
                raise ApiError(400, f"{name} contains a NUL character (\\u0000), which no identifier holds", field=name)
            return name, value
    return None, ""


INT64 = (-(2**63), 2**63 - 1)
Default = TypeVar("Default", int, None)


def query_int(request: Request, name: str, default: Default) -> int | Default:
    """An integer query parameter; the default when absent or not an integer. Past the range of a
    64-bit column it is clamped to it: the driver would refuse the bigger number (a 500)."""
    value = request.query_params.get(name)
    try:
        return max(INT64[0], min(int(value), INT64[1])) if value is not None else default
    except ValueError:
        return default


def query_limit(request: Request, default: int, maximum: int) -> int:
    """The `limit` query parameter, within 0..maximum (a negative LIMIT is an error on PostgreSQL)."""
    return max(0, min(query_int(request, "limit", default), maximum))


async def find_user_by_query(request: Request, conn: AsyncConnection) -> int:
    """The user a lookup's query names (one of user_id, anonymous_id, email); ApiError 400 or 404 otherwise."""
    kind, value = one_query(request, ("user_id", "anonymous_id", "email"))
    if kind is None:
        raise ApiError(400, "give one of user_id, anonymous_id or email", field="query")
    user_id = await profiles.find_user(conn, kind, value.lower() if kind == "email" else value)
    if user_id is None:
        raise ApiError(404, f"no user with {kind} {value!r}")
    return user_id
