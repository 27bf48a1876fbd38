"""Every dashboard page passes axe-core (the npm package, pinned in tests/package.json, injected into the page)
with no serious or critical violation, signed out and signed in, on a connector with data on every page.

The dashboard's Content-Security-Policy allows only its own scripts, so these tabs bypass it to inject axe;
the CSP itself is held by tests/web/test_dashboard.py's tabs.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, expect

from tests.support.app import in_ci
from tests.support.browser import VIEWPORT
from tests.support.dashboard import admin, eventually, identify, send_to_fake_segment, sign_in, user_found, via_batch

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]

AXE = Path(__file__).parents[1] / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = {"serious", "critical"}  # axe-core's impact levels: minor, moderate, serious, critical


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        message = "axe-core is not installed: npm ci --prefix tests (make test does it)"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return AXE.read_text()


@pytest_asyncio.fixture(loop_scope="module")
async def open_tab(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=VIEWPORT, bypass_csp=True)
    tab = await context.new_page()
    tab.set_default_timeout(15_000)
    yield tab
    await context.close()


async def violations(page: Page, axe_source: str) -> list[str]:
    """The serious and critical violations axe-core finds on the page as it stands, one line each."""
    await page.add_script_tag(content=axe_source)
    found: list[dict[str, Any]] = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{item['impact']} {item['id']}: {item['help']} at {[node['target'] for node in item['nodes']][:3]}"
        for item in found
        if item["impact"] in BLOCKING
    ]


async def test_no_page_has_a_serious_or_critical_accessibility_violation(
    open_tab, server, segment_api, axe_source, screenshots, request
):
    page = open_tab
    await via_batch(
        server,
        identify("ada", {"email": "ada@example.com", "plan": "pro"}),
        {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"name": "Acme"}},
        {"type": "track", "userId": "ada", "event": "Signed Up", "properties": {"feature": "onboarding"}},
    )
    await admin(
        server,
        "POST",
        "/api/segments",
        json={"name": "Paying", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    )
    await send_to_fake_segment(server, segment_api, synchronized_segments=["Paying"], send_events=["Signed Up"])
    user = await eventually(lambda: user_found(server, "ada"))
    segment = (await admin(server, "GET", "/api/segments"))["segments"][0]

    await page.goto(f"{server.url}/")
    await expect(page.get_by_label("Admin token")).to_be_visible()
    found = {"sign-in": await violations(page, axe_source)}
    await sign_in(page, server)
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    pages = {
        "overview": ("#/overview", "Messages out"),
        "settings": ("#/settings", "Save settings"),
        "segments": ("#/segments", "Paying"),
        "segment-editor": (f"#/segments/{segment['id']}", "matches now"),
        "profiles": ("#/profiles/search/users/ada", "ada"),
        "profile": (f"#/profiles/user/{user['id']}", "Would be sent now"),
        "deliveries": ("#/deliveries", "Dead letters"),
        "setup": ("#/setup", "Webhooks destination"),
    }
    backend = request.node.callspec.id
    for name, (route, shown) in pages.items():
        await page.goto(f"{server.url}/{route}")
        await expect(page.locator("#page")).to_contain_text(shown)
        await page.wait_for_timeout(300)  # charts draw on the next frame
        found[name] = await violations(page, axe_source)
        await page.screenshot(path=str(screenshots / f"a11y-{backend}-{name}.png"), full_page=True)
    assert not any(found.values()), {name: lines for name, lines in found.items() if lines}
