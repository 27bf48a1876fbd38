"""What the dashboard tests do to the connector besides clicking: feed it as Segment and its libraries do, ask
its admin API, and sign in to the dashboard."""

import base64
from typing import Any

import httpx
from playwright.async_api import Page

from tests.support.app import ADMIN_TOKEN, API_KEY, admin_auth, basic_auth, wait_until


async def eventually(predicate: Any) -> Any:
    """The worker in the web process gets there; on a loaded machine it may take a while."""
    return await wait_until(predicate, timeout=60)


async def call(server: Any, method: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.request(method, path, **kw)


async def via_segment(server: Any, message: dict[str, Any]) -> None:
    """What Segment's Webhooks destination does: one message, Basic auth with the API key."""
    response = await call(server, "POST", "/segment", headers=basic_auth(), json=message)
    assert response.status_code == 200, response.text


async def via_batch(server: Any, *messages: dict[str, Any]) -> None:
    """What a Segment library does: /v1/batch with the API key as the write key."""
    key = base64.b64encode(f"{API_KEY}:".encode()).decode()
    response = await call(
        server, "POST", "/v1/batch", headers={"Authorization": f"Basic {key}"}, json={"batch": list(messages)}
    )
    assert response.status_code == 200, response.text


async def admin(server: Any, method: str, path: str, **kw: Any) -> Any:
    response = await call(server, method, path, headers=admin_auth(), **kw)
    assert response.status_code < 300, response.text
    return response.json() if response.content else None


async def outgoing_total(server: Any, outcome: str) -> int:
    return sum((await admin(server, "GET", "/api/overview"))["outgoing"][outcome])


async def all_sent(server: Any) -> bool:
    """Nothing waits in the journal or the outbox."""
    status = await admin(server, "GET", "/api/status")
    return bool(status["journal"].get("pending", 0) == 0 and status["outbox"]["depth"] == 0)


async def send_to_fake_segment(server: Any, segment_api: Any, **settings: Any) -> None:
    """Settings that send to the fake Segment, with these others."""
    await admin(
        server,
        "PUT",
        "/api/settings",
        json={"write_key": segment_api.write_key, "segment_api_host": segment_api.url, **settings},
    )


async def settings_of(server: Any) -> dict[str, Any]:
    settings: dict[str, Any] = (await admin(server, "GET", "/api/settings"))["settings"]
    return settings


async def user_found(server: Any, user_id: str) -> Any:
    response = await call(server, "GET", "/api/users", headers=admin_auth(), params={"user_id": user_id})
    return response.json() if response.status_code == 200 else None


async def activity_has(server: Any, user: int, action: str) -> bool:
    entries = (await admin(server, "GET", f"/api/users/{user}/activity"))["activity"]
    return any(entry["action"] == action for entry in entries)


def identify(user: str, traits: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "identify", "userId": user, "traits": traits, **extra}


async def sign_in(page: Page, server: Any, token: str = ADMIN_TOKEN, at: str = "") -> None:
    await page.goto(f"{server.url}/{at}")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


def field(page: Page, schema: dict[str, Any], name: str) -> Any:
    """A setting's control, found by the title the schema gives it inside its section."""
    prop = schema["properties"][name]
    return page.locator(f'fieldset[data-section="{prop["section"]}"]').get_by_label(prop["title"], exact=True)


def chips(page: Page, name: str) -> Any:
    return page.locator(f'.field[data-field="{name}"] .chips li')
