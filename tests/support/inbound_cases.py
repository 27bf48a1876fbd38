"""One visitor's journey in every call type, and the profile it must leave behind.

Shared by the /segment, /v1 and analytics-python tests: the same messages must end in
the same profile whichever way they arrive.
"""

from typing import Any

import httpx

from tests.support.app import admin_auth


def journey(user_id: str) -> list[dict[str, Any]]:
    """An anonymous visit, sign-up, then a call of each type (journal order matters: alias comes after)."""
    anonymous_id, earlier_id = f"{user_id}-anon", f"{user_id}-earlier"
    return [
        {"type": "track", "anonymousId": earlier_id, "event": "Signed Up", "properties": {"plan": "trial"}},
        {
            "type": "identify",
            "userId": user_id,
            "anonymousId": anonymous_id,
            "traits": {"email": f"{user_id}@example.com", "plan": "pro", "address": {"city": "Paris"}},
        },
        {"type": "track", "userId": user_id, "event": "Order Completed", "properties": {"total": 42}},
        {"type": "page", "userId": user_id, "name": "Pricing", "properties": {"path": "/pricing"}},
        {"type": "screen", "anonymousId": anonymous_id, "name": "Home"},
        {
            "type": "group",
            "userId": user_id,
            "groupId": f"{user_id}-org",
            "traits": {"name": "Acme", "domain": f"{user_id}.example.org"},
        },
        {"type": "alias", "userId": user_id, "previousId": earlier_id},
    ]


async def enable_accounts(http: httpx.AsyncClient) -> None:
    response = await http.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True})
    assert response.status_code == 200, response.text


async def find_user(http: httpx.AsyncClient, **query: str) -> dict[str, Any] | None:
    """The profile the admin API finds for one identifier (user_id=, anonymous_id=, email=), None if it finds none."""
    response = await http.get("/api/users", params=query, headers=admin_auth())
    found: dict[str, Any] | None = response.json() if response.status_code == 200 else None
    return found


async def user_profile(http: httpx.AsyncClient, **query: str) -> dict[str, Any]:
    """The profile the admin API finds for one identifier, which must exist."""
    profile = await find_user(http, **query)
    assert profile is not None, f"no profile for {query}"
    return profile


async def assert_journey_stored(http: httpx.AsyncClient, user_id: str, source: str) -> None:
    """Every call of journey(user_id) is visible through the admin API, its events marked with their
    source: `segment` when Segment delivered them to /segment, `api` when a library posted to /v1/*."""
    profile = await find_user(http, user_id=user_id)
    assert profile is not None, f"no profile for {user_id}"
    assert profile["traits"] == {"email": f"{user_id}@example.com", "plan": "pro", "address": {"city": "Paris"}}
    assert set(profile["identifiers"]["anonymous_id"]) == {f"{user_id}-anon", f"{user_id}-earlier"}
    for query in (
        {"anonymous_id": f"{user_id}-earlier"},
        {"anonymous_id": f"{user_id}-anon"},
        {"email": f"{user_id.upper()}@EXAMPLE.COM"},
    ):
        assert (await find_user(http, **query) or {}).get("id") == profile["id"], query

    response = await http.get(f"/api/users/{profile['id']}/events", headers=admin_auth())
    assert response.status_code == 200, response.text
    events = {event["event"]: event for event in response.json()["events"]}
    assert set(events) == {"Signed Up", "Order Completed", "page", "screen"}
    assert events["Order Completed"]["properties"] == {"total": 42}
    assert events["page"]["properties"] == {"path": "/pricing", "name": "Pricing"}
    assert events["screen"]["properties"] == {"name": "Home"}
    assert {event["source"] for event in events.values()} == {source}

    assert profile["account"]["group_id"] == f"{user_id}-org"
    for query in ({"group_id": f"{user_id}-org"}, {"domain": f"{user_id}.example.org"}):
        account = (await http.get("/api/accounts", params=query, headers=admin_auth())).json()
        assert account["id"] == profile["account"]["id"], query
        assert account["traits"] == {"name": "Acme", "domain": f"{user_id}.example.org"}
