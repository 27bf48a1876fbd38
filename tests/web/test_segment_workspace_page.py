"""The Setup page's automatic way: a token, the sources ticked from a paged list, connect, what changed, drift
repaired, the round trip, disconnect — in Chromium against a live connector, the fake Public API and the fake
Segment delivering back over real HTTP."""

from pathlib import Path

import pytest
from playwright.async_api import Page, expect

from tests.support.app import LiveServer
from tests.support.dashboard import admin, sign_in
from tests.support.fake_public_api import OWNER_TOKEN

# The tests share the module's event loop, where the one browser lives.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def connect_through_the_page(
    page: Page, own_url_server: LiveServer, *names: str, screenshot: Path | None = None
) -> None:
    await sign_in(page, own_url_server, at="#/setup")
    card = page.locator("#segment-workspace")
    await card.get_by_label("Public API token").fill(OWNER_TOKEN)
    await expect(card.get_by_text("Sources that send to this connector:")).to_be_hidden()  # nothing listed yet
    await card.get_by_role("button", name="List sources").click()
    await expect(card.get_by_text("Sources that send to this connector:")).to_be_visible()
    await expect(card.get_by_label("Mobile app (iOS)")).to_be_visible()
    await expect(card.get_by_label("Backend (HTTP API)")).to_have_count(0)  # on the next page
    await card.get_by_role("button", name="More sources").click()
    await expect(card.get_by_label("Backend (HTTP API)")).to_be_visible()
    await expect(card.get_by_role("button", name="More sources")).to_be_hidden()
    for name in names:
        await card.get_by_label(name).check()
    if screenshot is not None:
        await page.screenshot(path=str(screenshot), full_page=True)
    await card.get_by_role("button", name="Connect").click()


async def test_the_sources_are_listed_once_the_token_is_entered(page, own_url_server, public_api):
    await sign_in(page, own_url_server, at="#/setup")
    card = page.locator("#segment-workspace")
    await card.get_by_label("Public API token").fill(OWNER_TOKEN)
    await card.get_by_label("Public API token").press("Tab")  # no click on List sources
    await expect(card.get_by_label("Website (Javascript)")).to_be_visible()
    await card.get_by_label("Website (Javascript)").check()
    await card.get_by_role("button", name="More sources").click()
    await expect(card.get_by_label("Backend (HTTP API)")).to_be_visible()
    await card.get_by_role("button", name="List sources").click()  # from the first page again, never doubled
    await expect(card.get_by_label("Backend (HTTP API)")).to_have_count(0)
    await expect(card.get_by_label("Mobile app (iOS)")).to_be_visible()
    await expect(card.get_by_label("Website (Javascript)")).to_have_count(1)
    await expect(card.get_by_label("Website (Javascript)")).to_be_checked()  # what was ticked stays ticked


async def test_connecting_from_the_setup_page_lists_what_was_created_and_the_round_trip_works(
    page, own_url_server, public_api, segment_api, screenshots, request
):
    public_api.add_source("hull-segment-connector", "meta-http-api", write_key=segment_api.write_key)
    picked = screenshots / f"{request.node.callspec.id}-setup-sources.png"
    await connect_through_the_page(
        page, own_url_server, "Website (Javascript)", "Backend (HTTP API)", screenshot=picked
    )
    changes = page.locator("#workspace-changes li")
    await expect(changes).to_have_count(4)  # Website, Backend, the way-back source, and the write_key setting
    await expect(changes.last).to_have_text("setting write_key: set from the workspace")
    await expect(changes.first).to_contain_text("created")
    await expect(page.locator("#workspace-verdict")).to_have_text("Everything matches.")
    await expect(page.locator("#workspace-connected")).to_contain_text("Acme")
    await expect(page.locator("#workspace-connected")).not_to_contain_text(OWNER_TOKEN)
    await expect(page.locator("#round-trip-status")).to_have_text("no round-trip test has run yet")

    await admin(own_url_server, "PUT", "/api/settings", json={"segment_api_host": segment_api.url})
    segment_api.deliver_through(public_api)
    await page.get_by_role("button", name="Test the round trip").click()
    await expect(page.locator("#round-trip-status")).to_contain_text("round trip works", timeout=30_000)
    await page.screenshot(path=str(screenshots / f"{request.node.callspec.id}-setup-workspace.png"), full_page=True)


async def test_a_destination_disabled_in_segment_shows_as_drifted_and_repair_puts_it_back(
    page, own_url_server, public_api, screenshots, request
):
    await connect_through_the_page(page, own_url_server, "Website (Javascript)")
    await expect(page.locator("#workspace-verdict")).to_have_text("Everything matches.")
    website = next(s["id"] for s in public_api.sources.values() if s["name"] == "Website")
    (destination,) = public_api.on_source(website)
    destination["enabled"] = False
    await page.reload()
    await expect(page.locator(f'li[data-source="{website}"]')).to_contain_text("on Website")
    await expect(page.locator(f'li[data-source="{website}"]')).to_contain_text("drifted: disabled")
    await page.screenshot(path=str(screenshots / f"{request.node.callspec.id}-setup-drifted.png"), full_page=True)
    await page.get_by_role("button", name="Repair").click()
    await expect(page.locator("#workspace-verdict")).to_have_text("Everything matches.")
    await expect(page.locator("#workspace-changes")).to_contain_text("updated (repaired)")
    assert destination["enabled"] is True

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Disconnect").click()
    await expect(page.locator("#workspace-changes")).to_contain_text("Disconnected: 2 destinations deleted")
    await expect(page.get_by_label("Public API token")).to_be_visible()
    assert public_api.on_source(website) == []


async def test_a_wrong_token_is_said_in_words_on_the_page(page, own_url_server):
    await sign_in(page, own_url_server, at="#/setup")
    card = page.locator("#segment-workspace")
    await card.get_by_label("Public API token").fill("sgp_wrong")
    await card.get_by_role("button", name="List sources").click()
    await expect(page.locator("#workspace-sources-status")).to_contain_text("Segment refused the token (401)")
    await expect(card.get_by_text("Sources that send to this connector:")).to_be_hidden()


async def test_changing_sources_keeps_the_chosen_ones_on_pages_not_listed_and_the_workspaces_region(
    page, own_url_server, public_api
):
    """Backend is on the sources' second page: ticking another source on the first must not drop it; and an EU
    workspace is listed and connected again in the EU."""
    website, mobile, backend = (
        next(s["id"] for s in public_api.sources.values() if s["name"] == name)
        for name in ("Website", "Mobile app", "Backend")
    )
    body = {"token": OWNER_TOKEN, "region": "eu", "source_ids": [website, backend]}
    await admin(own_url_server, "POST", "/api/segment-workspace", json=body)
    await sign_in(page, own_url_server, at="#/setup")
    card = page.locator("#segment-workspace")
    await card.get_by_role("button", name="Change sources").click()
    await expect(card.get_by_label("Region")).to_have_value("eu")
    await card.get_by_role("button", name="List sources").click()
    await expect(card.get_by_label("Website (Javascript)")).to_be_checked()
    await card.get_by_label("Mobile app (iOS)").check()
    await card.get_by_role("button", name="Connect", exact=True).click()
    await expect(page.locator("#workspace-changes")).to_contain_text("on Mobile app")
    await expect(page.locator("#workspace-changes")).not_to_contain_text("deleted")
    state = await admin(own_url_server, "GET", "/api/segment-workspace")
    assert state["region"] == "eu"
    assert sorted(state["source_ids"]) == sorted([website, mobile, backend])
    assert len(public_api.on_source(backend)) == 1


async def test_when_segment_cannot_be_read_the_connected_workspace_stays_on_the_page_with_the_reason(
    page, own_url_server, public_api, screenshots, request
):
    website = next(s["id"] for s in public_api.sources.values() if s["name"] == "Website")
    await admin(own_url_server, "POST", "/api/segment-workspace", json={"token": OWNER_TOKEN, "source_ids": [website]})
    public_api.fail(503, count=1000, prefix="GET")
    await sign_in(page, own_url_server, at="#/setup")
    connected = page.locator("#workspace-connected")
    await expect(connected).to_contain_text("Acme")
    await expect(page.locator("#workspace-verdict")).to_contain_text("Segment's Public API failed (503)")
    await expect(page.locator("#workspace-verdict")).not_to_contain_text("nothing was saved")
    await expect(connected.get_by_role("button", name="Disconnect")).to_be_visible()
    await page.screenshot(path=str(screenshots / f"{request.node.callspec.id}-setup-unreadable.png"), full_page=True)


async def test_the_source_the_connector_sends_back_through_is_listed_ticked_and_said_why(
    page, own_url_server, public_api
):
    """Unticking it would not take its destination away (the round trip comes back through it): it reads so."""
    public_api.add_source("hull-segment-connector", "meta-http-api")
    await sign_in(page, own_url_server, at="#/setup")
    card = page.locator("#segment-workspace")
    await card.get_by_label("Public API token").fill(OWNER_TOKEN)
    await card.get_by_role("button", name="List sources").click()
    await card.get_by_role("button", name="More sources").click()
    way_back = card.get_by_label("hull-segment-connector (HTTP API): the connector sends back through it")
    await expect(way_back).to_be_checked()
    await expect(way_back).to_be_disabled()
    await card.get_by_label("Website (Javascript)").check()
    await card.get_by_role("button", name="Connect", exact=True).click()
    await expect(page.locator("#workspace-verdict")).to_have_text("Everything matches.")


async def test_connecting_again_with_nothing_to_change_says_so(page, own_url_server, public_api):
    website = next(s["id"] for s in public_api.sources.values() if s["name"] == "Website")
    await admin(own_url_server, "POST", "/api/segment-workspace", json={"token": OWNER_TOKEN, "source_ids": [website]})
    await sign_in(page, own_url_server, at="#/setup")
    await page.get_by_role("button", name="Change sources").click()
    await page.get_by_role("button", name="List sources").click()
    await page.get_by_role("button", name="Connect", exact=True).click()
    await expect(page.locator("#workspace-changes")).to_have_text(
        "What changed:Nothing needed changing: everything was already right."
    )
