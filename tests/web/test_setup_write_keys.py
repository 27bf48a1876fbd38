"""The Setup page's browser write keys, in a real Chromium: create one (its key shown once, in the npm code and
the snippet with the connector's URL), see it masked after a reload, revoke it (refused at once)."""

import re

import pytest
from playwright.async_api import expect

from tests.support.app import basic_auth
from tests.support.dashboard import admin, call, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_setup_creates_a_write_key_shows_its_code_and_revokes_it(page, server, screenshots, request):
    await sign_in(page, server, at="#/setup")
    await expect(page.locator("#write-keys")).to_contain_text("No write key yet")
    await expect(page.get_by_label("Code for")).to_be_hidden()  # no key to choose yet
    await page.get_by_label("Website name").fill("Marketing site")
    await page.get_by_label("Allowed origins (empty: any)").fill("https://shop.example, https://www.shop.example/")
    await page.get_by_role("button", name="Create write key").click()
    await expect(page.locator("#write-keys-status")).to_contain_text("Created Marketing site")
    await expect(page.get_by_label("Code for")).to_have_value(re.compile(r"^\d+$"))

    [created] = (await admin(server, "GET", "/api/write-keys"))["write_keys"]
    assert created["allowed_origins"] == ["https://shop.example", "https://www.shop.example"]
    npm = await page.locator("#write-key-npm").text_content() or ""
    key = re.search(r'writeKey: "(hwk_[^"]+)"', npm)
    assert key is not None, npm
    assert f'cdnURL: "{server.url}"' in npm
    snippet = await page.locator("#write-key-snippet").text_content() or ""
    assert f'_writeKey = "{key[1]}"' in snippet and f'_cdn = "{server.url}"' in snippet
    await page.get_by_role("button", name="Copy the snippet").click()
    assert await page.evaluate("navigator.clipboard.readText()") == snippet
    track = {"userId": "u1", "event": "Signed up"}
    sent = await call(
        server, "POST", "/v1/t", headers={"Origin": "https://shop.example", **basic_auth(key[1])}, json=track
    )
    assert sent.status_code == 200
    await page.screenshot(path=str(screenshots / f"{request.node.callspec.id}-setup-write-keys.png"), full_page=True)

    await page.reload()  # the key was shown once: from now on it is masked, and the code says so
    await expect(page.locator("#write-keys")).to_contain_text(created["key"])
    await expect(page.locator("#write-key-npm")).to_contain_text("the write key shown when it was created")
    assert key[1] not in await page.content()

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Revoke Marketing site").click()
    await expect(page.locator("#write-keys-status")).to_contain_text("revoked")
    await expect(page.locator("#write-keys")).to_contain_text("No write key yet")
    await expect(page.get_by_label("Code for")).to_be_hidden()
    refused = await call(server, "POST", "/v1/t", headers=basic_auth(key[1]), json=track)
    assert refused.status_code == 401
    assert (await admin(server, "GET", "/api/overview"))["write_keys"][0]["messages"] == 1
    await page.goto(f"{server.url}/#/overview")  # the Overview counts the revoked key's message under its name
    card = page.locator(".card", has=page.get_by_role("heading", name="Browser write keys"))
    await expect(card).to_contain_text("Marketing site (revoked)")
    await page.screenshot(path=str(screenshots / f"{request.node.callspec.id}-overview-write-keys.png"), full_page=True)
