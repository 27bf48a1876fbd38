"""Segment's analytics.js (@segment/analytics-next, the npm package pinned in tests/package.json) on a website
of another origin, sending straight to the connector in a real Chromium: the CDN settings, the CORS
preflights, the short paths, the batching and keepalive strategies, and the refusals (a revoked key, an
origin the key does not allow). No request may go to any host but the two local ones (no Segment CDN, no
api.segment.io).
"""

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, Page, Request, expect
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import connector.inbound.analytics_js
from tests.support.app import ServerThread, admin_auth
from tests.support.browser import VIEWPORT
from tests.support.dashboard import admin, call, eventually, sign_in, user_found

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

UMD = Path(__file__).parents[1] / "node_modules" / "@segment" / "analytics-next" / "dist" / "umd"
SHOP_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>The shop</title></head>
<body><h1>The shop</h1><script src="/analytics-next/bundles/index.js"></script></body></html>"""
BATCHING = {"Segment.io": {"deliveryStrategy": {"strategy": "batching", "config": {"size": 3, "timeout": 300}}}}
LONG_BATCH = {"Segment.io": {"deliveryStrategy": {"strategy": "batching", "config": {"size": 100, "timeout": 60_000}}}}
KEEPALIVE = {"Segment.io": {"deliveryStrategy": {"strategy": "standard", "config": {"keepalive": True}}}}
# What a website does: load analytics.js from the connector's settings, then a visit.
VISIT = """async ({connector, writeKey, integrations, user}) => {
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL: connector}, {integrations});
  await analytics.page("Pricing", {plan: "team"});
  await analytics.identify(user, {email: `${user}@shop.example`, plan: "team"});
  await analytics.track("Added to cart", {sku: "T-1"});
  await analytics.group(`${user}-company`, {name: "Shop Inc"});
  return analytics.user().anonymousId();
}"""


PAGES: dict[str, str] = {}  # pages a test writes for the shop to serve at /pages/<name>


@pytest.fixture(scope="module")
def shop() -> Any:
    """The website: another origin (another local port) serving a page and the analytics.js UMD bundle."""
    if not (UMD / "index.js").exists():
        pytest.fail("tests/node_modules lacks @segment/analytics-next: run `make node-deps`", pytrace=False)

    async def page(_: Any) -> HTMLResponse:
        return HTMLResponse(SHOP_PAGE)

    async def pasted(request: Any) -> HTMLResponse:
        return HTMLResponse(PAGES[request.path_params["name"]])

    routes = [Route("/", page), Route("/pages/{name}", pasted)]
    app = Starlette(routes=[*routes, Mount("/analytics-next/bundles", StaticFiles(directory=UMD))])
    with ServerThread(app, name="shop") as server:
        yield server


class Tab:
    """A tab on the shop's page that lets through only the shop and the connector, and records each /v1 answer."""

    def __init__(self, context: BrowserContext, page: Page, allowed: tuple[str, ...]):
        self.context, self.page, self.allowed = context, page, allowed
        self.foreign: list[str] = []
        self.answers: list[tuple[str, str, int]] = []
        self.authorized: list[str] = []  # the calls that sent Authorization: each needed a CORS preflight first
        self.cors_blocked: list[str] = []  # Chromium's console lines for answers it kept from the page
        page.on("response", self.record)
        page.on("console", lambda message: self.cors_blocked.append(message.text) if "CORS" in message.text else None)

    async def record(self, response: Any) -> None:
        if "/v1/" in response.url:
            self.answers.append((response.request.method, response.url, response.status))
            if "authorization" in await response.request.all_headers():
                self.authorized.append(response.url)

    def note(self, request: Request) -> None:
        if not request.url.startswith(self.allowed):
            self.foreign.append(request.url)


@pytest_asyncio.fixture(loop_scope="module")
async def tab(browser: Browser, shop: Any, server: Any) -> AsyncIterator[Tab]:
    context = await browser.new_context(viewport=VIEWPORT)
    page = await context.new_page()
    page.set_default_timeout(15_000)
    tab = Tab(context, page, (shop.url, server.url))
    # Requests are watched, not intercepted: with interception on, Chromium drops what is sent as the page unloads.
    context.on("request", tab.note)
    await page.goto(shop.url)
    yield tab
    await context.close()
    assert tab.foreign == [], f"analytics.js reached beyond the connector: {tab.foreign}"


async def write_key(server: Any, **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = await admin(server, "POST", "/api/write-keys", json={"name": "shop", **body})
    return created


async def visit(tab: Tab, server: Any, key: str, user: str, integrations: dict[str, Any] | None = None) -> str:
    arguments = {"connector": server.url, "writeKey": key, "integrations": integrations or {}, "user": user}
    anonymous_id: str = await tab.page.evaluate(VISIT, arguments)
    return anonymous_id


async def processed_visit(server: Any, user: str) -> dict[str, Any]:
    """The visitor's profile once all four calls were processed: the anonymous page view merged into it."""

    async def done() -> Any:
        found = await user_found(server, user)
        types = {event["type"] for event in found["recent_events"]} if found else set()
        return found if {"page", "track"} <= types else None

    profile: dict[str, Any] = await eventually(done)
    return profile


def assert_browser_context(profile: dict[str, Any], shop: Any, anonymous_id: str) -> None:
    assert anonymous_id in profile["identifiers"]["anonymous_id"]
    assert profile["traits"]["email"] == f"{profile['identifiers']['user_id'][0]}@shop.example"
    for event in profile["recent_events"]:
        context = event["context"]
        assert "Chrome" in context["userAgent"], context
        assert context["page"]["url"] == f"{shop.url}/", context
        assert context["library"]["name"] == "analytics.js", context
        assert event["source"] == "api"


@pytest.mark.parametrize(
    ("strategy", "integrations", "short_path"),
    [("default", None, "/v1/t"), ("batching", BATCHING, "/v1/b"), ("keepalive", KEEPALIVE, "/v1/t")],
)
async def test_a_website_sends_every_call_to_the_connector(tab, shop, server, strategy, integrations, short_path):
    await admin(server, "PUT", "/api/settings", json={"handle_accounts": True})
    key = await write_key(server, allowed_origins=[shop.url])
    user = f"visitor-{strategy}"
    anonymous_id = await visit(tab, server, key["key"], user, integrations)
    profile = await processed_visit(server, user)
    assert_browser_context(profile, shop, anonymous_id)
    account = await eventually(lambda: _account(server, f"{user}-company"))
    assert account["traits"]["name"] == "Shop Inc"
    methods = {(method, url.removeprefix(server.url)) for method, url, status in tab.answers if status < 300}
    assert ("GET", f"/v1/projects/{key['key']}/settings") in methods
    assert ("POST", short_path) in methods
    assert f"{server.url}{short_path}" in tab.authorized  # so Chromium's preflight was granted
    overview = await admin(server, "GET", "/api/overview")
    counted = {entry["id"]: entry["messages"] for entry in overview["write_keys"]}
    assert counted[key["id"]] == 4


async def test_calls_made_as_the_page_unloads_arrive(tab, shop, server):
    key = await write_key(server, allowed_origins=[shop.url])  # a beacon and a keepalive fetch carry the Origin too
    await tab.page.evaluate(
        """async ({connector, writeKey, integrations}) => {
          const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL: connector}, {integrations});
          analytics.track("Left the shop", {}, {userId: "leaver"});
          await new Promise((resolve) => setTimeout(resolve, 300));  // in the batch, which waits for a minute
          // What a page does by hand as it goes: a beacon, text/plain with the write key in the body.
          const beacon = {userId: "beaconer", event: "Closed the tab", writeKey};
          if (!navigator.sendBeacon(`${connector}/v1/t`, JSON.stringify(beacon))) throw new Error("beacon refused");
        }""",
        {"connector": server.url, "writeKey": key["key"], "integrations": LONG_BATCH},
    )
    await tab.page.goto("about:blank")  # pagehide: analytics.js sends the waiting batch with keepalive
    assert await eventually(lambda: _has_event(server, "leaver", "Left the shop"))
    assert await eventually(lambda: _has_event(server, "beaconer", "Closed the tab"))


async def test_a_revoked_key_and_a_foreign_origin_are_refused(tab, shop, server):
    revoked = await write_key(server)
    elsewhere = await write_key(server, allowed_origins=["https://not-the-shop.example"])
    loaded = """async ({connector, writeKey}) => {
      const [analytics] = await AnalyticsNext.AnalyticsBrowser.load({writeKey, cdnURL: connector});
      window.refused = analytics;
    }"""
    await tab.page.evaluate(loaded, {"connector": server.url, "writeKey": revoked["key"]})
    await admin(server, "DELETE", f"/api/write-keys/{revoked['id']}")
    await tab.page.evaluate("window.refused.track('After revocation', {}, {userId: 'revoked-user'})")
    await tab.page.evaluate(loaded, {"connector": server.url, "writeKey": elsewhere["key"]})
    await tab.page.evaluate("window.refused.track('From a foreign origin', {}, {userId: 'foreign-user'})")

    def refused(status: int) -> bool:
        return any(method == "POST" and code == status for method, _, code in tab.answers)

    await eventually(lambda: refused(401))  # the revoked key: the answer, with its grant, reaches the page
    # The foreign origin: 403 without the grant, so Chromium keeps even the answer from the page.
    await eventually(lambda: any(f"{server.url}/v1/t" in line for line in tab.cors_blocked))
    for user in ("revoked-user", "foreign-user"):
        assert await user_found(server, user) is None
    status = await admin(server, "GET", "/api/status")
    assert status["journal"].get("pending", 0) == 0


async def test_the_setup_pages_snippet_works_as_given_on_a_website(page, tab, shop, server):
    # The snippet the Setup page shows, pasted into a page of the shop: analytics.js comes from the connector.
    # A reader comes from a newsletter (analytics.js's ajs_ query string) and clicks a tracked link: analytics.js
    # loads those two optional parts of itself, from the connector too (the tab fails on any other host).
    await sign_in(page, server, at="#/setup")
    await page.get_by_label("Website name").fill("The shop")
    await page.get_by_role("button", name="Create write key").click()
    await expect(page.locator("#write-key-snippet")).to_contain_text('_writeKey = "hwk_')  # the new key, filled in
    snippet = await page.locator("#write-key-snippet").text_content()
    PAGES["snippet"] = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Pasted</title></head>
<body><a id="more" href="#more">More</a>
{snippet}
<script>analytics.track("Read the page")</script>
</body></html>"""
    scripts: list[str] = []
    tab.page.on("request", lambda request: scripts.append(request.url) if request.resource_type == "script" else None)
    await tab.page.goto(f"{shop.url}/pages/snippet?ajs_uid=reader&ajs_event=Opened%20the%20newsletter")
    await tab.page.wait_for_function("() => typeof window.analytics.initialized === 'boolean'")  # analytics.js ran
    await tab.page.evaluate("analytics.trackLink(document.getElementById('more'), 'Read more')")
    await tab.page.click("#more")
    profile = await eventually(lambda: _has_event(server, "reader", "Read more"))
    events = {event["event"] for event in profile["recent_events"]}
    assert {"page", "Read the page", "Opened the newsletter", "Read more"} <= events  # queued calls included
    for event in profile["recent_events"]:
        assert event["context"]["page"]["path"] == "/pages/snippet", event
        assert event["context"]["library"]["name"] == "analytics.js", event
    assert scripts[0].startswith(f"{server.url}/analytics.js/v1/hwk_"), scripts
    parts = [url for url in scripts[1:] if url.startswith(f"{server.url}/analytics-next/bundles/")]
    assert len(parts) == len(scripts) - 1 >= 2, scripts  # the query string's part and trackLink's


async def test_the_connector_serves_analytics_js_as_the_pinned_npm_package_has_it():
    # What websites load from the connector is the package the browser tests run, unchanged:
    # scripts/vendor-analytics-next copies it again after tests/package.json changes.
    served = Path(connector.inbound.analytics_js.__file__).with_name("analytics_next")
    pinned = json.loads((Path(__file__).parents[1] / "package.json").read_text())["devDependencies"]
    assert (served / "VERSION").read_text().strip() == pinned["@segment/analytics-next"]
    wanted = {path.name for path in UMD.iterdir() if path.name == "standalone.js" or ".bundle." in path.name}
    wanted = {name for name in wanted if name.endswith(".js")}
    assert {path.name for path in served.glob("*.js")} == wanted
    for name in wanted:
        assert (served / name).read_bytes() == (UMD / name).read_bytes(), name


async def test_a_rate_limited_page_reads_how_long_to_wait(tab, server):
    # analytics.js waits a 429's Retry-After (res.headers.get("Retry-After")) before it sends again.
    await admin(server, "PUT", "/api/settings", json={"write_key_rate_limit": 1})
    key = await write_key(server)
    answers = await tab.page.evaluate(
        """async ({connector, writeKey}) => {
          const answers = [];
          for (let call = 0; call < 3; call++) {
            const body = JSON.stringify({userId: "hasty", event: "Clicked", writeKey});  // text/plain: no preflight
            const answer = await fetch(`${connector}/v1/t`, {method: "POST", body});
            answers.push([answer.status, answer.headers.get("Retry-After")]);
          }
          return answers;
        }""",
        {"connector": server.url, "writeKey": key["key"]},
    )
    assert answers[0] == [200, None]
    assert [429, "1"] in answers[1:]


async def _account(server: Any, group_id: str) -> Any:
    response = await call(server, "GET", "/api/accounts", headers=admin_auth(), params={"group_id": group_id})
    return response.json() if response.status_code == 200 else None


async def _has_event(server: Any, user: str, event: str) -> Any:
    found = await user_found(server, user)
    return found if found and event in {e["event"] for e in found["recent_events"]} else None
