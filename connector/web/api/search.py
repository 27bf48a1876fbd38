"""Profile search for the dashboard: users by the start of an identifier or email, or of an email's domain;
accounts by group id or domain.

A search reads ranges of the identifier, email and account indexes (profiles.LAST), at most
profiles.SEARCH_LIMIT profiles, by id; an exact lookup is GET /api/users and GET /api/accounts.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.spec import has_nul
from connector.web import profiles
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, runtime_of

MAX_QUERY = 255  # the longest identifier, group id or domain stored

Search = Callable[[AsyncConnection, str], Awaitable[list[dict[str, Any]]]]


async def _search(request: Request, search: Search, key: str) -> JSONResponse:
    text = request.query_params.get("q", "").strip()
    if not text or len(text) > MAX_QUERY or has_nul(text):
        raise ApiError(400, f"q must be 1 to {MAX_QUERY} characters, without NUL", field="q")
    async with runtime_of(request).engine.connect() as conn:
        return JSONResponse({key: await search(conn, text)})


@requires_admin
async def search_users(request: Request) -> JSONResponse:
    """
    summary: Users whose user_id, anonymous_id or email starts with q, or whose email's part after the @ does
      ("acme" or "@acme" finds bob@acme.com); emails in any case, the email trait too; by id
    parameters:
      - {name: q, in: query, required: true, schema: {type: string, minLength: 1, maxLength: 255}}
    responses:
      200: {description: "up to 20 users", schema: {$ref: "#/components/schemas/UserMatches"}}
      400: {description: "q missing, too long or holding NUL"}
    """
    return await _search(request, profiles.search_users, "users")


@requires_admin
async def search_accounts(request: Request) -> JSONResponse:
    """
    summary: Accounts whose group_id or domain starts with q (domains in any case), by id
    parameters:
      - {name: q, in: query, required: true, schema: {type: string, minLength: 1, maxLength: 255}}
    responses:
      200: {description: "up to 20 accounts", schema: {$ref: "#/components/schemas/AccountMatches"}}
      400: {description: "q missing, too long or holding NUL"}
    """
    return await _search(request, profiles.search_accounts, "accounts")


routes = [
    Route("/api/users/search", search_users, methods=["GET"]),
    Route("/api/accounts/search", search_accounts, methods=["GET"]),
]
