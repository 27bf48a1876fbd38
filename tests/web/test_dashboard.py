"""The dashboard in a real headless Chromium, against the real app on a real socket, fed through /segment
and /v1/batch, with the worker running in the web process and the fake Segment as the outbound API.

The settings form follows settings.schema.json: controls are found by the titles the served schema
gives, never by a list of field names kept here. A screenshot of every page (1400x900) is saved under
the run's temporary folder; the run prints where.
"""

import base64
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, ViewportSize, async_playwright, expect

from tests.support.app import ADMIN_TOKEN, API_KEY, admin_auth, basic_auth, in_ci, wait_until
from tests.support.browser import CHROMIUM, chromium_missing
from tests.support.fake_segment import FakeSegment, of_type

# The tests share the module's event loop, where the one browser lives.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module (launching takes a second or two); each test gets a fresh context."""
    if not CHROMIUM.exists():
        chromium_missing(in_ci())
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="module")
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab = await context.new_page()
    tab.set_default_timeout(15_000)
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    # A Content-Security-Policy refusal (an inline style, a foreign host) is logged as a console error.
    tab.on(
        "console", lambda message: problems.append(message.text) if "Content Security Policy" in message.text else None
    )
    yield tab
    await context.close()
    assert not problems, f"the dashboard failed: {problems}"


@pytest.fixture
def segment_api() -> Any:
    with FakeSegment() as fake:
        yield fake


@pytest.fixture
def server(live_server_factory: Any) -> Any:
    return live_server_factory(run_worker_in_web=True)


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-screenshots", numbered=False)


# --- feeding and asking the connector ----------------------------------------------------------


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
    return status["journal"].get("pending", 0) == 0 and status["outbox"]["depth"] == 0


async def send_to_fake_segment(server: Any, segment_api: Any, **settings: Any) -> None:
    """Settings that send to the fake Segment, with these others."""
    await admin(
        server,
        "PUT",
        "/api/settings",
        json={"write_key": segment_api.write_key, "segment_api_host": segment_api.url, **settings},
    )


async def settings_of(server: Any) -> dict[str, Any]:
    return (await admin(server, "GET", "/api/settings"))["settings"]


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


# --- the tests -------------------------------------------------------------------------------


async def test_signing_in_opens_the_overview_and_a_wrong_token_is_refused(page, server):
    await sign_in(page, server, token="not-the-admin-token")
    await expect(page.get_by_role("alert")).to_contain_text("not accepted")
    await expect(page.get_by_label("Admin token")).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#page")).to_be_hidden()
    await expect(page.get_by_role("navigation", name="Pages")).to_be_hidden()
    assert await page.evaluate("sessionStorage.length") == 0

    await page.get_by_label("Admin token").fill(ADMIN_TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for name in ("Overview", "Settings", "Segments", "Profiles", "Deliveries", "Setup"):
        await expect(page.get_by_role("navigation", name="Pages").get_by_role("link", name=name)).to_be_visible()
    await page.get_by_role("link", name="Deliveries").click()
    await expect(page).to_have_url(re.compile(r"#/deliveries$"))
    await page.reload()  # a page is linkable: the same URL opens it again, the token kept for the tab
    await expect(page.get_by_role("heading", name="Deliveries")).to_be_visible()

    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Admin token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


async def test_the_overview_charts_the_traffic_that_was_sent(page, server, segment_api):
    await send_to_fake_segment(server, segment_api, synchronized_segments=["ALL"], send_events=["Signed Up"])
    await via_segment(server, identify("u-1", {"plan": "pro"}))
    await via_batch(
        server,
        identify("u-2", {"plan": "free"}),
        {"type": "track", "userId": "u-2", "event": "Signed Up"},
        {"type": "track", "userId": "u-2", "event": "Page Scrolled"},  # not in send_events: skipped
    )
    await eventually(lambda: outgoing_total(server, "skipped"))
    await eventually(lambda: len(segment_api.messages) >= 3)
    await sign_in(page, server)

    incoming = page.get_by_role("figure").filter(has_text="Messages in")
    await expect(incoming.locator('[data-series="identify.processed"]')).to_have_text(
        re.compile(r"identify\.processed 2$")
    )
    await expect(incoming.locator('[data-series="track.processed"]')).to_have_text(re.compile(r"track\.processed 2$"))
    await expect(incoming.locator("canvas")).to_have_count(1)
    outgoing = page.get_by_role("figure").filter(has_text="Messages out")
    await expect(outgoing.locator('[data-series="sent"]')).to_have_text(re.compile(r"sent 3$"))
    await expect(outgoing.locator('[data-series="skipped"]')).to_have_text(re.compile(r"skipped 1$"))
    await expect(outgoing.locator("canvas")).to_have_count(1)


async def test_a_status_warning_for_segments_without_a_write_key_appears_and_clears(page, server):
    schema = await admin(server, "GET", "/settings.schema.json")
    await sign_in(page, server, at="#/settings")
    banner = page.locator("#status-banner")
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await expect(banner.locator('[data-code="no_write_key"]')).to_have_count(0)

    await field(page, schema, "synchronized_segments").select_option("ALL")
    await page.get_by_role("button", name="Save settings").click()
    await expect(banner.locator('[data-code="no_write_key"]')).to_contain_text("no write key is set")
    await expect(banner).to_contain_text("Status: warning")

    await field(page, schema, "write_key").fill("wk_live_0123456789abcdef")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    await expect(banner.locator('[data-code="no_write_key"]')).to_have_count(0)


async def test_segments_and_attributes_picked_from_the_lists_stay_set_after_a_reload(page, server):
    schema = await admin(server, "GET", "/settings.schema.json")
    await via_batch(server, identify("u-1", {"plan": "pro", "company_size": 12}))
    await eventually(lambda: user_found(server, "u-1"))
    await admin(
        server,
        "POST",
        "/api/segments",
        json={"name": "Paying", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    )
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")

    await field(page, schema, "synchronized_segments").select_option("Paying")
    await field(page, schema, "synchronized_properties").select_option("company_size")
    await field(page, schema, "synchronized_properties").select_option("usage.events_30d")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    stored = await settings_of(server)
    assert stored["synchronized_segments"] == ["Paying"]
    assert stored["synchronized_properties"] == ["email", "company_size", "usage.events_30d"]

    await page.reload()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await expect(chips(page, "synchronized_segments")).to_have_attribute("data-name", "Paying")
    await expect(chips(page, "synchronized_properties")).to_have_count(3)
    for name in ("email", "company_size", "usage.events_30d"):
        await expect(
            page.locator(f'.field[data-field="synchronized_properties"] li[data-name="{name}"]')
        ).to_have_count(1)
    # A picked name leaves the picker: it cannot be chosen twice.
    options = await field(page, schema, "synchronized_segments").locator("option").all_text_contents()
    assert "Paying" not in options and "ALL" in options


async def test_an_attribute_sent_under_a_name_typed_beside_it_is_stored_as_a_mapping_and_shown_after_a_reload(
    page, server
):
    schema = await admin(server, "GET", "/settings.schema.json")
    await via_batch(server, identify("u-1", {"plan": "pro"}))
    await eventually(lambda: user_found(server, "u-1"))
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")

    await field(page, schema, "synchronized_properties").select_option("plan")
    await page.get_by_label("plan sent as").fill("subscription_plan")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    assert (await settings_of(server))["synchronized_properties"] == [
        "email",
        {"from": "plan", "to": "subscription_plan"},
    ]

    await page.reload()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await expect(page.get_by_label("plan sent as")).to_have_value("subscription_plan")
    await expect(page.get_by_label("email sent as")).to_have_value("")


async def test_the_icp_setting_is_edited_as_json_and_a_bad_rule_names_its_field(page, server):
    schema = await admin(server, "GET", "/settings.schema.json")
    icp = {
        "rules": [{"rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}, "points": 10}],
        "good_at": 10,
        "medium_at": 5,
    }
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")

    control = field(page, schema, "icp")
    await control.fill(json.dumps(icp))
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    saved = await settings_of(server)
    assert saved["icp"] == icp

    await control.fill(json.dumps({**icp, "rules": [{"rule": {"attribute": "traits.plan", "op": "is"}, "points": 1}]}))
    await page.get_by_role("button", name="Save settings").click()
    await expect(control).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#setting-icp-error")).to_contain_text("unknown operator")
    assert await settings_of(server) == saved


async def test_a_rule_s_preview_equals_the_count_after_saving_and_a_segment_is_renamed_and_deleted(page, server):
    await via_batch(server, *(identify(f"u-{n}", {"plan": "pro" if n < 3 else "free", "seats": n}) for n in range(5)))
    await eventually(lambda: user_found(server, "u-4"))
    await sign_in(page, server, at="#/segments/new")

    await page.get_by_label("Segment name").fill("Pro with seats")
    condition = page.locator(".condition").first
    await condition.get_by_label("Attribute").fill("traits.plan")
    await condition.get_by_label("Operator").select_option("eq")
    await condition.get_by_label("Value").fill("pro")
    await page.get_by_role("button", name="Add condition").click()
    second = page.locator(".condition").nth(1)
    await second.get_by_label("Attribute").fill("traits.seats")
    await second.get_by_label("Operator").select_option("gte")
    await second.get_by_label("Value").fill("1")
    await expect(page.locator("#preview-count")).to_have_text("2 users match now")
    await expect(page.locator("#preview-sample tbody tr")).to_have_count(2)
    await page.locator("summary", has_text="JSON view").click()
    assert '"gte"' in await page.get_by_label("Rule (JSON)").input_value()

    await page.get_by_role("button", name="Create segment").click()
    await expect(page.locator("#segment-status")).to_have_text("Saved: 2 members.")
    await expect(page).to_have_url(re.compile(r"#/segments/\d+$"))
    [segment] = (await admin(server, "GET", "/api/segments"))["segments"]
    assert (segment["name"], segment["member_count"]) == ("Pro with seats", 2)

    await page.get_by_label("Segment name").fill("Seated pros")
    await page.get_by_role("button", name="Save segment").click()
    await expect(page.locator("#segment-status")).to_have_text("Saved: 2 members.")
    await page.get_by_role("link", name="All segments").click()
    row = page.locator('tr[data-segment="Seated pros"]')
    await expect(row.locator("td.members")).to_have_text("2")
    await expect(page.locator('tr[data-segment="Pro with seats"]')).to_have_count(0)

    await row.get_by_role("link", name="Seated pros").click()
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Delete segment").click()
    await expect(page).to_have_url(re.compile(r"#/segments$"))
    await expect(page.get_by_text("No segments yet")).to_be_visible()
    assert (await admin(server, "GET", "/api/segments"))["segments"] == []


async def test_a_user_sent_through_segment_shows_traits_events_activity_and_the_would_be_identify(
    page, server, segment_api
):
    await send_to_fake_segment(server, segment_api, synchronized_segments=["Paying"])
    await via_segment(
        server,
        identify(
            "u-seg",
            {"plan": "pro", "email": "ada@example.com", "title": "VP of Engineering"},
            timestamp="2024-05-01T10:00:00Z",
        ),
    )
    await via_segment(
        server, {"type": "track", "userId": "u-seg", "event": "Order Completed", "properties": {"total": 42}}
    )
    user = await eventually(lambda: user_found(server, "u-seg"))
    await eventually(lambda: activity_has(server, user["id"], "outgoing.user.skip"))
    await eventually(lambda: all_sent(server))
    # Now every user is in the filter: the save queues u-seg at once (the first sync); Segment failing, it is
    # not delivered, so its identify is what would be sent.
    segment_api.fail(500, count=1000)
    saved = await admin(server, "PUT", "/api/settings", json={"synchronized_segments": ["ALL"]})
    assert saved["queued"] == {"users": 1, "accounts": 0}
    await sign_in(page, server, at="#/profiles")

    await page.get_by_label("Starts with").fill("u-se")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("link", name=f"User #{user['id']}").click()
    traits = page.locator('tr[data-trait="plan"]')
    await expect(traits).to_contain_text('"pro"')
    await expect(traits).to_contain_text("2024")  # when the trait was set: the message's time
    await expect(page.locator("#events tr").filter(has_text="Order Completed")).to_have_count(1)
    scanners = page.locator("section.card").filter(has=page.get_by_role("heading", name="Scanners"))
    await expect(scanners.locator("dd")).to_have_text(["vp", "engineering", "—", "—"])
    skip = page.locator('tr[data-action="outgoing.user.skip"]').first
    await expect(skip.locator(".reason")).to_have_text("not in synchronized segments")
    would = page.locator("#would-send")
    await expect(would).to_contain_text('"type": "identify"')
    await expect(would).to_contain_text('"userId": "u-seg"')


async def test_a_dead_letter_is_replayed_from_the_deliveries_page(page, server, segment_api):
    await send_to_fake_segment(server, segment_api, synchronized_segments=["ALL"])
    segment_api.fail(400, 1)
    await via_batch(server, identify("u-dead", {"plan": "pro"}))
    letters = await eventually(lambda: dead_letters(server))
    await sign_in(page, server, at="#/deliveries")
    row = page.locator(f'tr[data-letter="{letters[0]["id"]}"]')
    await expect(row).to_contain_text("identify · u-dead")
    await expect(row.locator(".reason")).not_to_be_empty()

    await row.get_by_role("button", name=f"Replay dead letter {letters[0]['id']}").click()
    await expect(page.locator("#dead-letters-status")).to_contain_text("Replayed 1.")
    await expect(row).to_have_count(0)
    assert [message["userId"] for message in segment_api.messages] == ["u-dead"]
    await expect(page.locator('#status-banner [data-code="dead_letters"]')).to_have_count(0)
    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Overview").click()
    await expect(page.get_by_role("link", name="user u-dead")).to_be_visible()  # the last errors: its userId


async def test_a_segment_saved_into_the_filter_in_settings_reaches_segment_and_the_overview_shows_the_sync(
    page, server, segment_api, screenshots, request
):
    schema = await admin(server, "GET", "/settings.schema.json")
    await via_batch(server, *(identify(f"u-{n}", {"plan": "pro" if n < 3 else "free"}) for n in (1, 2, 3)))
    await eventually(lambda: user_found(server, "u-3"))
    await admin(
        server,
        "POST",
        "/api/segments",
        json={"name": "Pro users", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    )
    await send_to_fake_segment(server, segment_api)
    await eventually(lambda: all_sent(server))
    assert segment_api.messages == []
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")

    await field(page, schema, "synchronized_segments").select_option("Pro users")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("2 users queued to be sent now")
    await eventually(lambda: len(of_type(segment_api.messages, "identify")) == 2)
    assert sorted(message["userId"] for message in segment_api.messages) == ["u-1", "u-2"]

    await page.get_by_role("navigation", name="Pages").get_by_role("link", name="Overview").click()
    await expect(page.locator("#sync-queued")).to_have_text("2 users")
    await expect(page.locator("#sync-sent")).to_have_text("2 users")
    await expect(page.locator("#sync-failed")).to_have_text("0 users")
    await expect(page.locator("#sync-waiting")).to_have_text("none: done")
    await expect(page.locator("#sync")).to_contain_text("Pro users")
    await page.screenshot(path=str(screenshots / f"state-{request.node.callspec.id}-overview-sync.png"))


async def test_send_to_everyone_now_queues_the_filter_and_its_progress_follows_until_nothing_waits(
    page, server, segment_api
):
    await send_to_fake_segment(server, segment_api, synchronized_segments=["ALL"])
    await via_batch(server, identify("u-1", {"plan": "pro"}), identify("u-2", {"plan": "free"}))
    await eventually(lambda: len(segment_api.messages) == 2)
    await eventually(lambda: all_sent(server))
    await sign_in(page, server)

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Send to everyone now").click()
    await expect(page.locator("#sync-status")).to_have_text("Queued 2 users: they are being sent now.")
    await expect(page.locator("#sync-queued")).to_have_text("2 users")
    # Segment holds both unchanged: skipped, not sent again; the card follows until the outbox is empty.
    await expect(page.locator("#sync-skipped")).to_have_text("2 users")
    await expect(page.locator("#sync-waiting")).to_have_text("none: done")
    assert len(segment_api.messages) == 2


async def test_the_status_names_group_calls_ignored_and_messages_waiting_without_a_write_key_with_a_fix_link(
    page, server, screenshots, request
):
    await via_batch(
        server,
        identify("u-1", {"email": "ada@example.com"}),
        {"type": "group", "userId": "u-1", "groupId": "g-1", "traits": {"name": "Acme"}},
    )
    await eventually(lambda: all_processed(server))
    await sign_in(page, server)

    status = page.locator("#page ul.messages")
    await expect(page.get_by_text("Everything is working.")).to_have_count(0)
    ignored = status.locator('[data-code="groups_ignored"]')
    await expect(ignored).to_contain_text("1 group calls ignored: Handle group calls is off")
    await expect(status.locator('[data-code="no_write_key"]')).to_contain_text(
        "1 outgoing messages wait in the outbox but no write key is set"
    )
    incoming = page.get_by_role("figure").filter(has_text="Messages in")
    await expect(incoming.locator('[data-series="group.skipped"]')).to_have_text(re.compile(r"group\.skipped 1$"))
    await expect(incoming.locator('[data-series="group.processed"]')).to_have_count(0)
    await page.screenshot(path=str(screenshots / f"state-{request.node.callspec.id}-overview-status.png"))
    await ignored.get_by_role("link", name="fix it").click()
    await expect(page).to_have_url(re.compile(r"#/settings$"))


async def all_processed(server: Any) -> bool:
    return (await admin(server, "GET", "/api/status"))["journal"].get("pending", 0) == 0


async def dead_letters(server: Any) -> list[dict[str, Any]]:
    return (await admin(server, "GET", "/api/dead-letters"))["dead_letters"]


async def test_a_profile_is_erased_after_confirmation(page, server):
    await via_batch(server, identify("u-gone", {"plan": "pro"}, anonymousId="anon-gone"))
    user = await eventually(lambda: user_found(server, "u-gone"))
    await sign_in(page, server, at=f"#/profiles/user/{user['id']}")

    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.get_by_role("button", name="Erase user").click()
    await expect(page.locator('tr[data-trait="plan"]')).to_be_visible()
    assert await user_found(server, "u-gone")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Erase user").click()
    await expect(page.locator("#erased")).to_contain_text("identifiers suppressed")
    assert await user_found(server, "u-gone") is None


async def test_every_page_looks_right_at_1400_by_900(page, server, segment_api, screenshots, request, capsys):
    await send_to_fake_segment(
        server,
        segment_api,
        synchronized_segments=["Paying"],
        synchronized_properties=["email", "plan"],
        send_events=["Order Completed"],
    )
    for n in range(6):
        await via_segment(
            server, identify(f"user-{n}", {"plan": "pro" if n % 2 else "free", "email": f"user{n}@example.com"})
        )
        await via_batch(
            server,
            {"type": "track", "userId": f"user-{n}", "event": "Order Completed", "properties": {"feature": "checkout"}},
        )
    await admin(
        server,
        "POST",
        "/api/segments",
        json={"name": "Paying", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    )
    user = await eventually(lambda: user_found(server, "user-1"))
    await eventually(lambda: len(segment_api.messages) >= 3)
    segment = (await admin(server, "GET", "/api/segments"))["segments"][0]
    backend = request.node.callspec.id
    pages = {
        "overview": ("#/overview", "Messages out"),
        "settings": ("#/settings", "Save settings"),
        "segments": ("#/segments", "Paying"),
        "segment-editor": (f"#/segments/{segment['id']}", "users match now"),
        "profiles": ("#/profiles/search/users/user-", "user-1"),
        "profile": (f"#/profiles/user/{user['id']}", "Would be sent now"),
        "deliveries": ("#/deliveries", "Dead letters"),
        "setup": ("#/setup", "Webhooks destination"),
    }
    await sign_in(page, server)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    for name, (route, shown) in pages.items():
        await page.goto(f"{server.url}/{route}")
        await expect(page.locator("#page")).to_contain_text(shown)
        await page.wait_for_timeout(300)  # charts draw on the next frame
        await page.screenshot(path=str(screenshots / f"{backend}-{name}.png"))
    with capsys.disabled():
        print(f"\ndashboard screenshots: {screenshots}")
    assert len(list(screenshots.glob(f"{backend}-*.png"))) == len(pages)


async def test_an_invalid_value_is_shown_at_its_field_and_nothing_is_stored(page, server):
    schema = await admin(server, "GET", "/settings.schema.json")
    before = await admin(server, "GET", "/api/settings")
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")

    await field(page, schema, "forward_events").click()  # a valid change in the same save is not stored either
    host = field(page, schema, "segment_api_host")
    await host.fill("not a url")
    await page.get_by_role("button", name="Save settings").click()

    await expect(host).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#setting-segment_api_host-error")).to_contain_text(
        schema["properties"]["segment_api_host"]["title"]
    )
    await expect(page.locator("#settings-status")).to_contain_text("segment_api_host")
    assert await admin(server, "GET", "/api/settings") == before


async def test_the_write_key_is_only_ever_shown_masked_and_kept_unless_typed(page, server):
    schema = await admin(server, "GET", "/settings.schema.json")
    write_key = "wk_live_9f8e7d6c5b4a3f2e1d0c"
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")

    await field(page, schema, "write_key").fill(write_key)
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    stored = (await settings_of(server))["write_key"]
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
    assert (await settings_of(server))["write_key"] == stored


async def test_setup_shows_the_urls_and_the_api_key_is_revealed_copied_and_rotated(page, live_server_factory):
    server = live_server_factory(connector_api_key=None)  # a generated key, so it can be rotated
    await sign_in(page, server, at="#/setup")
    await expect(page.locator("#segment-endpoint")).to_have_text(f"{server.url}/segment")
    key = page.get_by_label("API key")
    await expect(key).to_have_value(re.compile(r"^•+"))
    await page.get_by_role("button", name="Reveal").click()
    await expect(key).to_have_value(re.compile(r"^hsc_"))
    old = await key.input_value()
    await page.get_by_role("button", name="Hide").click()
    await expect(key).not_to_have_value(old)
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("#api-key-status")).to_contain_text("copied")
    assert await page.evaluate("navigator.clipboard.readText()") == old

    page.once("dialog", lambda dialog: dialog.dismiss())
    await page.get_by_role("button", name="Rotate").click()
    await page.get_by_role("button", name="Reveal").click()
    await expect(key).to_have_value(old)
    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Rotate").click()
    await expect(page.locator("#api-key-status")).to_contain_text("New API key in force")
    new = await key.input_value()
    assert new != old
    identify_call = identify("u-rotate", {"plan": "pro"})
    refused = await call(server, "POST", "/v1/identify", headers=basic_auth(old), json=identify_call)
    accepted = await call(server, "POST", "/v1/identify", headers=basic_auth(new), json=identify_call)
    assert (refused.status_code, accepted.status_code) == (401, 200)
