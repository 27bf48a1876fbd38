"""The dashboard tests' fixtures: one Chromium a module, a fresh tab a test (failing it on a script error or a
Content-Security-Policy refusal), the fake Segment, the live server with its worker, the screenshots' folder."""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from tests.support.app import in_ci
from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, VIEWPORT, chromium_missing
from tests.support.fake_segment import FakeSegment


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
