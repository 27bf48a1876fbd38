"""The dashboard in a real headless Chromium, against the real app on a real socket.

The settings form is expected to follow settings.schema.json: the expectations below
are derived from the schema the server serves, never from a list of field names.
"""

import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import pytest_asyncio
from conftest import ADMIN_TOKEN, API_KEY, _in_ci, admin_auth, basic_auth, wait_until
from fake_segment import FakeSegment
from playwright.async_api import Browser, Page, async_playwright, expect

from connector.db import create_engine
from connector.models import DeadLetter, utcnow

# The tests share the module's event loop, where the one browser lives.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOT = Path("/tmp/dashboard.png")
MISSING_CHROMIUM = "Debian's Chromium is missing: apt-get install -y chromium (or `make browser`)"


def chromium_missing(in_ci: bool) -> NoReturn:
    """No Chromium: with CI=true the browser tests fail (CI must run them); elsewhere they are skipped."""
    if in_ci:
        pytest.fail(f"CI=true expects Chromium at {CHROMIUM}: {MISSING_CHROMIUM}", pytrace=False)
    pytest.skip(MISSING_CHROMIUM)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module (launching takes a second or two); each test gets a fresh context."""
    if not CHROMIUM.exists():
        chromium_missing(_in_ci())
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab = await context.new_page()
    tab.set_default_timeout(10_000)
    script_errors: list[Exception] = []
    tab.on("pageerror", lambda error: script_errors.append(error))
    yield tab
    await context.close()
    assert not script_errors, f"the dashboard's script failed: {script_errors}"


@pytest.fixture
def server(live_server_factory: Any) -> Any:
    return live_server_factory()


async def api_get(server: Any, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        return await http.get(path, headers=admin_auth(), **kw)


async def stored_settings(server: Any) -> dict[str, Any]:
    response = await api_get(server, "/api/settings")
    assert response.status_code == 200, response.text
    return response.json()


async def sign_in(page: Page, server: Any, token: str = ADMIN_TOKEN) -> None:
    await page.goto(server.url + "/")
    await page.get_by_label("Admin token").fill(token)
    await page.get_by_role("button", name="Sign in").click()


async def open_dashboard(page: Page, server: Any) -> None:
    await sign_in(page, server)
    await expect(page.locator("#settings-status")).to_contain_text("Version")


def field(page: Page, schema: dict[str, Any], name: str) -> Any:
    """The control labelled by the property's title inside its section's fieldset."""
    prop = schema["properties"][name]
    return page.locator(f'fieldset[data-section="{prop["section"]}"]').get_by_label(prop["title"], exact=True)


def kind(prop: dict[str, Any]) -> str:
    types = {option.get("type") for option in prop.get("anyOf", [prop])}
    if "object" in types or any("$ref" in option for option in prop.get("anyOf", [prop])):
        return "json"
    if types & {"integer", "number"}:
        return "number"
    return "boolean" if "boolean" in types else "array" if "array" in types else "string"


async def test_every_setting_is_a_labelled_control_in_its_section(page, server):
    schema = (await api_get(server, "/settings.schema.json")).json()
    settings = (await stored_settings(server))["settings"]
    await open_dashboard(page, server)

    used = [s for s in schema["x-sections"] if any(p["section"] == s for p in schema["properties"].values())]
    await expect(page.locator("fieldset.section > legend")).to_have_text(used)
    for name, prop in schema["properties"].items():
        control = field(page, schema, name)
        await expect(control, f"{name} is one labelled control in {prop['section']}").to_have_count(1)
        await expect(control).to_have_accessible_description(re.compile(re.escape(prop["description"])))
        if kind(prop) == "boolean":
            await expect(control).to_have_attribute("type", "checkbox")
            assert await control.is_checked() == settings[name], name
        elif prop.get("secret"):
            await expect(control).to_have_attribute("type", "password")
            await expect(control).to_have_value(settings[name] or "")
        elif kind(prop) == "array":
            await expect(control).to_have_value(", ".join(settings[name]))
        elif kind(prop) == "number":
            await expect(control).to_have_attribute("type", "number")
            await expect(control).to_have_value(str(settings[name]))
        elif kind(prop) == "json":
            await expect(control).to_have_value("" if settings[name] is None else json.dumps(settings[name], indent=2))
        else:
            await expect(control).to_have_value(settings[name])


async def test_boolean_and_list_changes_persist(page, server):
    schema = (await api_get(server, "/settings.schema.json")).json()
    before = await stored_settings(server)
    await open_dashboard(page, server)

    await field(page, schema, "handle_accounts").click()
    await field(page, schema, "send_events").fill(" Order Completed, Signed Up ,, Order Completed")
    await page.get_by_role("button", name="Save settings").click()

    await expect(page.locator("#settings-status")).to_contain_text(f"version {before['version'] + 1}")
    after = await stored_settings(server)
    assert after["version"] == before["version"] + 1
    assert after["settings"]["handle_accounts"] is not before["settings"]["handle_accounts"]
    assert after["settings"]["send_events"] == ["Order Completed", "Signed Up"]
    # Untouched settings are not rewritten by the form.
    assert {k: v for k, v in after["settings"].items() if k not in ("handle_accounts", "send_events")} == {
        k: v for k, v in before["settings"].items() if k not in ("handle_accounts", "send_events")
    }
    await expect(field(page, schema, "send_events")).to_have_value("Order Completed, Signed Up")

    await page.reload()  # the token is kept for the tab: the saved values come back from the server
    await expect(field(page, schema, "handle_accounts")).to_be_checked(checked=after["settings"]["handle_accounts"])
    await expect(field(page, schema, "send_events")).to_have_value("Order Completed, Signed Up")


async def test_invalid_value_names_the_field_and_stores_nothing(page, server):
    schema = (await api_get(server, "/settings.schema.json")).json()
    before = await stored_settings(server)
    await open_dashboard(page, server)

    await field(page, schema, "forward_events").click()  # a valid change in the same save is not stored either
    host = field(page, schema, "segment_api_host")
    await host.fill("not a url")
    await page.get_by_role("button", name="Save settings").click()

    await expect(host).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#setting-segment_api_host-error")).to_contain_text(
        schema["properties"]["segment_api_host"]["title"]
    )
    await expect(page.locator("#settings-status")).to_contain_text("segment_api_host")
    assert await stored_settings(server) == before


async def test_the_icp_setting_is_edited_as_json_and_a_bad_rule_names_its_field(page, server):
    schema = (await api_get(server, "/settings.schema.json")).json()
    icp = {"rules": [{"rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}, "points": 10}]}
    await open_dashboard(page, server)

    control = field(page, schema, "icp")
    await control.fill(json.dumps({**icp, "good_at": 10, "medium_at": 5}))
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    saved = await stored_settings(server)
    assert saved["settings"]["icp"] == {**icp, "good_at": 10, "medium_at": 5}

    await control.fill(
        json.dumps(
            {"rules": [{"rule": {"attribute": "traits.plan", "op": "is"}, "points": 1}], "good_at": 10, "medium_at": 5}
        )
    )
    await page.get_by_role("button", name="Save settings").click()
    await expect(control).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#setting-icp-error")).to_contain_text("unknown operator")
    assert await stored_settings(server) == saved


async def test_write_key_is_only_ever_shown_masked(page, server):
    schema = (await api_get(server, "/settings.schema.json")).json()
    write_key = "wk_live_9f8e7d6c5b4a3f2e1d0c"
    await open_dashboard(page, server)

    await field(page, schema, "write_key").fill(write_key)
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")

    stored = (await stored_settings(server))["settings"]["write_key"]
    assert stored.endswith(write_key[-4:]) and write_key not in stored
    for view in ("after saving", "after a reload"):
        await expect(field(page, schema, "write_key")).to_have_value(stored)
        values = await page.locator("input, textarea").evaluate_all("nodes => nodes.map(n => n.value)")
        assert not any(write_key in value for value in values), view
        assert write_key not in await page.content(), view
        await page.reload()
        await expect(page.locator("#settings-status")).to_contain_text("Version")

    # Saving another change sends the secret back masked: the stored key is kept.
    await field(page, schema, "identify_by_email").click()
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    assert (await stored_settings(server))["settings"]["write_key"] == stored


async def test_wrong_token_shows_the_sign_in_error(page, server):
    await sign_in(page, server, token="not-the-admin-token")
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await expect(page.get_by_label("Admin token")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#dashboard")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0

    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#dashboard")).to_be_visible()
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Admin token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_endpoints_and_api_key_reveal_copy(page, server):
    await open_dashboard(page, server)
    await expect(page.locator("#segment-endpoint")).to_have_text(f"{server.url}/segment")
    await expect(page.locator("#v1-endpoint")).to_have_text(f"{server.url}/v1")

    key = page.get_by_label("API key")
    await expect(key).not_to_have_value(API_KEY)
    await expect(key).to_have_value(re.compile(re.escape(API_KEY[-4:]) + "$"))
    await page.get_by_role("button", name="Reveal").click()
    await expect(key).to_have_value(API_KEY)
    await page.get_by_role("button", name="Hide").click()
    await expect(key).not_to_have_value(API_KEY)

    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("#api-key-status")).to_contain_text("copied")
    assert await page.evaluate("navigator.clipboard.readText()") == API_KEY


async def test_rotate_asks_first_and_the_old_key_stops_working(page, live_server_factory):
    server = live_server_factory(connector_api_key=None)  # a generated key, so it can be rotated
    await open_dashboard(page, server)
    await page.get_by_role("button", name="Reveal").click()
    key = page.get_by_label("API key")
    await expect(key).to_have_value(re.compile(r"^hsc_"))
    old = await key.input_value()

    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.get_by_role("button", name="Rotate").click()
    await expect(key).to_have_value(old)

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Rotate").click()
    await expect(key).not_to_have_value(old)
    new = await key.input_value()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        identify = {"userId": "u-rotate", "traits": {"plan": "pro"}}
        assert (await http.post("/v1/identify", headers=basic_auth(old), json=identify)).status_code == 401
        assert (await http.post("/v1/identify", headers=basic_auth(new), json=identify)).status_code == 200


async def test_journal_and_user_lookup(page, live_server_factory):
    server = live_server_factory(run_worker_in_web=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        response = await http.post(
            "/v1/identify",
            headers=basic_auth(),
            json={"userId": "u-look", "traits": {"email": "Grace@Example.com", "plan": "pro"}},
        )
        assert response.status_code == 200, response.text
    await wait_until(lambda: api_found(server, {"user_id": "u-look"}))
    counts = (await api_get(server, "/api/status")).json()["journal"]
    await open_dashboard(page, server)

    for status, count in counts.items():
        await expect(page.locator("#journal-counts")).to_contain_text(f"{status}{count}")
    await page.get_by_label("Look up by").select_option("email")
    await page.get_by_label("Identifier to look up").fill("grace@example.com")
    await page.get_by_role("button", name="Find user").click()
    result = page.locator("#lookup-result")
    await expect(result).to_contain_text("user_id: u-look")
    await expect(result).to_contain_text('"plan": "pro"')

    await page.get_by_label("Identifier to look up").fill("nobody@example.com")
    await page.get_by_role("button", name="Find user").click()
    await expect(page.locator("#lookup-status")).to_contain_text("no user with email")
    await expect(result).to_be_empty()


async def api_found(server: Any, params: dict[str, str]) -> bool:
    return (await api_get(server, "/api/users", params=params)).status_code == 200


async def test_panels_say_so_when_the_server_lacks_an_endpoint(page, server):
    for path in ("/api/segments", "/api/dead-letters"):
        await page.route(f"**{path}", lambda route: route.fulfill(status=404, json={"message": "Not Found"}))
    await open_dashboard(page, server)
    await expect(page.locator("#segments-status")).to_contain_text("Segments are not available on this server")
    await expect(page.locator("#dead-letters-status")).to_contain_text("Dead letters are not available on this server")
    await expect(page.locator("#segments-table")).to_be_hidden()
    await expect(page.get_by_role("button", name="Replay all")).to_be_hidden()


async def test_segments_show_member_counts(page, live_server_factory):
    server = live_server_factory(run_worker_in_web=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for user, plan in (("u-pro", "pro"), ("u-free", "free")):
            response = await http.post(
                "/v1/identify", headers=basic_auth(), json={"userId": user, "traits": {"plan": plan}}
            )
            assert response.status_code == 200, response.text
    await wait_until(lambda: api_found(server, {"user_id": "u-free"}))
    await open_dashboard(page, server)

    await page.get_by_text("New segment", exact=True).click()
    await page.get_by_label("Segment name").fill("Pro users")
    await page.get_by_label("Rule (JSON)").fill('{"attribute": "traits.plan", "op": "eq", "value": "pro"}')
    await page.get_by_role("button", name="Create segment").click()
    row = page.locator("#segments-table tr", has_text="Pro users")
    await expect(row.locator("td.number")).to_have_text("1")
    listed = (await api_get(server, "/api/segments")).json()["segments"]
    assert [(s["name"], s["member_count"]) for s in listed] == [("Pro users", 1)]

    await page.get_by_label("Segment name").fill("Broken")
    await page.get_by_label("Rule (JSON)").fill('{"attribute": "traits.plan", "op": "nope", "value": 1}')
    await page.get_by_role("button", name="Create segment").click()
    await expect(page.locator("#segment-error")).to_contain_text("op")
    assert len((await api_get(server, "/api/segments")).json()["segments"]) == 1

    await page.get_by_label("Identifier to look up").fill("u-pro")
    await page.get_by_role("button", name="Find user").click()
    await expect(page.locator("#lookup-result")).to_contain_text("SegmentsPro users")
    await page.screenshot(path=str(SCREENSHOT), full_page=True)


async def test_dead_letter_replay_delivers_it(page, server, database_url):
    message = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u-dead",
        "messageId": "dead-1",
        "timestamp": "2024-05-01T10:00:00Z",
        "properties": {"total": 42},
    }
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        letter_id = (
            await conn.execute(
                DeadLetter.__table__.insert()
                .values(message=message, reason="Segment answered 400", status_code=400, created_at=utcnow())
                .returning(DeadLetter.__table__.c.id)
            )
        ).scalar_one()
    await engine.dispose()
    with FakeSegment() as segment:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.put(
                "/api/settings",
                headers=admin_auth(),
                json={"write_key": segment.write_key, "segment_api_host": segment.url},
            )
            assert response.status_code == 200, response.text
        await open_dashboard(page, server)
        row = page.locator("#dead-letters-table tr", has_text="Order Completed")
        await expect(row).to_contain_text("Segment answered 400")

        await page.get_by_role("button", name=f"Replay dead letter {letter_id}").click()
        await expect(page.locator("#dead-letters-status")).to_contain_text("Replayed 1.")
        await expect(row).to_have_count(0)
        assert segment.message_ids() == ["dead-1"]
