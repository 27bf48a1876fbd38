"""The Overview's charts zoom: dragging across one shows that span only, its legend totals counting that span,
and "Zoom out" (shown only while zoomed) gives the whole 24 hours back."""

import pytest
from playwright.async_api import expect

from tests.support.dashboard import eventually, identify, sign_in, user_found, via_batch

pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


async def test_dragging_across_a_chart_zooms_into_that_span_and_zoom_out_shows_the_whole_day(page, server):
    await via_batch(server, identify("ada", {"plan": "pro"}))
    await eventually(lambda: user_found(server, "ada"))
    await sign_in(page, server)
    chart = page.locator("figure.chart-figure").first
    await expect(chart.locator(".u-over")).to_be_visible()
    zoom_out = chart.get_by_role("button", name="Zoom out")
    await expect(zoom_out).to_be_hidden()
    identify_total = chart.locator('.legend li[data-series="identify.processed"] strong')
    await expect(identify_total).to_have_text("1")
    box = await chart.locator(".u-over").bounding_box()
    assert box is not None
    middle = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * 0.4, middle)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.6, middle, steps=8)
    await page.mouse.up()
    await expect(zoom_out).to_be_visible()
    await expect(chart).to_contain_text("Showing ")
    await expect(identify_total).to_have_text("0")  # the identify came in at the end of the day, outside the span
    await zoom_out.click()
    await expect(zoom_out).to_be_hidden()
    await expect(chart).to_contain_text("Drag across the chart to zoom in.")
    await expect(identify_total).to_have_text("1")
