"""The dashboard in a real headless Chromium, against the real app on a real socket, fed through /segment
and /v1/batch, with the worker running in the web process and the fake Segment as the outbound API.

The settings form follows settings.schema.json: controls are found by the titles the served schema
gives, never by a list of field names kept here. A screenshot of every page (1400x900) is saved under
the run's temporary folder; the run prints where.
"""

import json
import re
from typing import Any

import pytest
from playwright.async_api import Dialog, Page, expect

from tests.support.app import ADMIN_TOKEN, admin_auth, basic_auth
from tests.support.dashboard import (
    activity_has,
    admin,
    all_sent,
    call,
    chips,
    eventually,
    field,
    identify,
    outgoing_total,
    send_to_fake_segment,
    settings_of,
    sign_in,
    user_found,
    via_batch,
    via_segment,
)
from tests.support.fake_segment import of_type

# The tests share the module's event loop, where the one browser lives.
pytestmark = [pytest.mark.browser, pytest.mark.asyncio(loop_scope="module")]


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
    await field(page, schema, "synchronized_properties").select_option("traits.company_size")
    await field(page, schema, "synchronized_properties").select_option("usage.events_30d")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    stored = await settings_of(server)
    assert stored["synchronized_segments"] == ["Paying"]
    assert stored["synchronized_properties"] == ["email", "traits.company_size", "usage.events_30d"]

    await page.reload()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await expect(chips(page, "synchronized_segments")).to_have_attribute("data-name", "Paying")
    await expect(chips(page, "synchronized_properties")).to_have_count(3)
    for name in ("email", "traits.company_size", "usage.events_30d"):
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

    await field(page, schema, "synchronized_properties").select_option("traits.plan")
    await page.get_by_label("traits.plan sent as").fill("subscription_plan")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    assert (await settings_of(server))["synchronized_properties"] == [
        "email",
        {"from": "traits.plan", "to": "subscription_plan"},
    ]

    await page.reload()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await expect(page.get_by_label("traits.plan sent as")).to_have_value("subscription_plan")
    await expect(page.get_by_label("email sent as")).to_have_value("")


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
    # The status already says "Saved: 2 members." from the creation: wait for the rename's own answer.
    async with page.expect_response(lambda response: response.request.method == "PUT"):
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


async def test_a_name_never_seen_is_marked_as_it_is_typed_and_a_suggestion_replaces_it(page, server, screenshots):
    await via_batch(
        server,
        identify("ada", {"plan": "pro"}),
        {"type": "track", "userId": "ada", "event": "Report Created"},
    )
    await eventually(lambda: user_found(server, "ada"))
    await sign_in(page, server, at="#/segments/new")

    condition = page.locator(".condition").first
    await condition.get_by_label("Attribute").fill("traits.paln")
    await expect(condition.locator(".unseen")).to_contain_text("Never seen: no attribute named “traits.paln”")
    await condition.get_by_role("button", name="traits.plan").click()
    await expect(condition.get_by_label("Attribute")).to_have_value("traits.plan")
    await expect(condition.locator(".unseen")).to_be_hidden()
    await expect(page.locator("#preview-count")).to_have_text("1 user matches now")

    await condition.get_by_label("Condition on").select_option("event")
    await condition.get_by_label("Event name").fill("Report Crated")
    await expect(condition.locator(".unseen")).to_contain_text("Did you mean Report Created?")
    await page.screenshot(path=str(screenshots / "segment-editor-unseen.png"))
    await condition.get_by_role("button", name="Report Created").click()
    await expect(condition.locator(".unseen")).to_be_hidden()
    # "at least N times, within N days" and the remove button keep to one line: "days" and the button never wrap alone.
    middles = []
    for part in (
        condition.get_by_label("Count is"),
        condition.get_by_text("days", exact=False).last,
        condition.get_by_role("button", name="Remove condition"),
    ):
        box = await part.bounding_box()
        assert box is not None
        middles.append(box["y"] + box["height"] / 2)
    assert max(middles) - min(middles) < 10, middles


async def test_a_short_trait_name_is_read_as_traits_dot_name_the_spelling_of_every_screen(page, server):
    await via_batch(server, identify("ada", {"plan": "pro"}))
    await eventually(lambda: user_found(server, "ada"))
    await sign_in(page, server, at="#/segments/new")

    attribute = page.locator(".condition").first.get_by_label("Attribute")
    await attribute.fill("plan")
    await attribute.press("Tab")
    await expect(attribute).to_have_value("traits.plan")
    await page.locator("summary", has_text="JSON view").click()
    assert '"attribute": "traits.plan"' in await page.get_by_label("Rule (JSON)").input_value()


async def test_the_json_view_and_the_builder_are_one_rule_and_errors_name_the_condition(page, server, screenshots):
    await sign_in(page, server, at="#/segments/new")
    await page.locator("summary", has_text="JSON view").click()
    rule = page.get_by_label("Rule (JSON)")
    await rule.fill('{"all": [{"attribute": "traits.plan", "op": "equals", "value": "pro"}]}')

    operator = page.locator(".condition").first.get_by_label("Operator")
    await expect(operator.locator("option:checked")).to_have_text("equals (unknown)")
    await expect(page.locator("#segment-error")).to_contain_text("Condition 1: choose an operator")
    await expect(page.locator("#segment-error")).not_to_contain_text("rule.all[0]")
    preview = page.locator("#preview-count")
    await expect(preview).to_have_text("No preview: the rule is not complete.")
    # A small muted line, not a heading-sized figure.
    size = await preview.evaluate("node => parseFloat(getComputedStyle(node).fontSize)")
    body = await page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)")
    assert size <= body
    await page.screenshot(path=str(screenshots / "segment-editor-json.png"))

    await operator.select_option("neq")
    assert '"op": "neq"' in await rule.input_value()
    await expect(preview).to_have_text("0 users match now")
    await rule.fill('{"any": [{"event": "Signed Up", "count": {"lte": 2}}]}')
    await expect(page.locator(".condition").first.get_by_label("Event name")).to_have_value("Signed Up")
    await expect(page.locator(".condition").first.get_by_label("Count is")).to_have_value("lte")


async def test_saving_one_member_says_member_and_one_account_matches(page, server):
    await via_batch(server, {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"industry": "retail"}})
    await admin(server, "PUT", "/api/settings", json={"handle_accounts": True})
    await via_batch(server, {"type": "group", "userId": "ada", "groupId": "acme", "traits": {"industry": "retail"}})
    await eventually(lambda: user_found(server, "ada"))
    await sign_in(page, server, at="#/segments/new")
    await page.get_by_label("Segment name").fill("Retail")
    await page.get_by_label("Segment of").select_option("account")
    condition = page.locator(".condition").first
    await condition.get_by_label("Attribute").fill("traits.industry")
    await condition.get_by_label("Value").fill("retail")
    await expect(page.locator("#preview-count")).to_have_text("1 account matches now")
    await page.get_by_role("button", name="Create segment").click()
    await expect(page.locator("#segment-status")).to_have_text("Saved: 1 member.")


async def test_a_setting_naming_an_attribute_never_seen_is_saved_with_a_warning_at_its_field(page, server):
    await via_batch(server, identify("ada", {"plan": "pro", "email": "ada@example.com"}))
    await eventually(lambda: user_found(server, "ada"))
    schema = (await call(server, "GET", "/settings.schema.json")).json()
    await sign_in(page, server, at="#/settings")
    prop = schema["properties"]["synchronized_properties"]
    other = page.locator('.field[data-field="synchronized_properties"]').get_by_label(f"{prop['title']}: another name")
    await other.fill("paln")
    await page.get_by_role("button", name="Save settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    await expect(page.locator("#setting-synchronized_properties-warning")).to_have_text(
        "'paln' was never seen: no user has sent it yet; did you mean 'traits.plan'?"
    )
    assert (await settings_of(server))["synchronized_properties"] == ["email", "paln"]


async def test_a_user_sent_through_segment_shows_traits_events_activity_and_the_would_be_identify(
    page, server, segment_api
):
    # The user is in no synchronized segment at first: the identify is skipped, with its reason.
    paying = {"name": "Paying", "rule": {"attribute": "traits.plan", "op": "eq", "value": "enterprise"}}
    await admin(server, "POST", "/api/segments", json=paying)
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
    await page.get_by_role("link", name="u-seg", exact=True).click()
    traits = page.locator('tr[data-trait="plan"]')
    await expect(traits).to_contain_text('"pro"')
    await expect(traits).to_contain_text("2024")  # when the trait was set: the message's time
    await expect(page.locator("#events tr").filter(has_text="Order Completed")).to_have_count(1)
    scanners = page.locator("section.card").filter(has=page.get_by_role("heading", name="Scanners"))
    await expect(scanners.locator("dd")).to_have_text(["vp", "engineering", "—", "—"])
    skip = page.locator('tr[data-action="outgoing.user.skip"]').first
    await expect(skip.locator(".activity-reason")).to_have_text("not in synchronized segments")
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
    await expect(ignored).to_contain_text("1 group call ignored: Handle group calls is off")
    await expect(status.locator('[data-code="no_write_key"]')).to_contain_text(
        "1 outgoing message waits in the outbox but no write key is set"
    )
    incoming = page.get_by_role("figure").filter(has_text="Messages in")
    await expect(incoming.locator('[data-series="group.skipped"]')).to_have_text(re.compile(r"group\.skipped 1$"))
    await expect(incoming.locator('[data-series="group.processed"]')).to_have_count(0)
    await page.screenshot(path=str(screenshots / f"state-{request.node.callspec.id}-overview-status.png"))
    await ignored.get_by_role("link", name="fix it").click()
    await expect(page).to_have_url(re.compile(r"#/settings$"))
    await expect(page.locator("#settings-status")).to_contain_text("Version")  # the page the link opens, loaded


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
    await expect(page.locator("#erased")).to_have_text(ERASED_U_GONE)
    assert await user_found(server, "u-gone") is None


# What erasing u-gone removes, said as a person would: its one message left an activity entry, the journal row, and
# (no write_key: nothing is sent) its identify waiting in the outbox.
ERASED_U_GONE = (
    "Removed the profile, 2 identifiers, 1 activity entry, 1 message waiting to be sent, 1 received message's payload. "
    "2 identifiers are on the suppression list: later messages naming them are dropped."
)


def results(page: Page) -> Any:
    return page.locator("#search-results tbody tr")


async def search_users(page: Page, text: str) -> None:
    await page.get_by_label("Starts with").fill(text)
    await page.get_by_role("button", name="Search").click()


async def test_a_user_is_found_by_a_word_of_its_email_listed_by_user_id_and_email_and_shows_the_email_trait(
    page, server
):
    await via_batch(server, identify("u-bob", {"email": "bob@acme.com"}), identify("u-eve", {"email": "eve@else.org"}))
    await eventually(lambda: user_found(server, "u-eve"))
    await sign_in(page, server, at="#/profiles")

    for text in ("bob", "acme", "@ACME.com"):
        await search_users(page, text)
        await expect(results(page)).to_have_count(1)
        await expect(results(page).locator("td")).to_have_text(["u-bob", "bob@acme.com", "—", re.compile(r"\d")])
    await search_users(page, "com")
    await expect(page.locator("#search-results")).to_have_text("No user starts with “com”.")

    await search_users(page, "acme")
    await results(page).get_by_role("link", name="u-bob").click()
    identifiers = page.locator("section.card").filter(has=page.get_by_role("heading", name="Identifiers"))
    # identify_by_email is off: the email is a trait, and said to be one.
    await expect(identifiers.locator("dt").nth(2)).to_have_text("Email (trait)")
    await expect(identifiers.locator("dd").nth(2)).to_have_text("bob@acme.com")


async def test_an_account_lists_its_users_and_a_user_and_its_account_link_each_other(page, server):
    await admin(server, "PUT", "/api/settings", json={"handle_accounts": True})
    # Ada's profile first, then Cid's (two identities' messages are applied in either order when posted together).
    await via_batch(server, identify("u-ada", {"email": "ada@acme.com"}))
    await eventually(lambda: user_found(server, "u-ada"))
    await via_batch(server, identify("u-cid", {}))
    # A batch runs with the settings read as it starts: once this is processed, the worker has read the save.
    await eventually(lambda: user_found(server, "u-cid"))
    await via_batch(
        server,
        *(
            {"type": "group", "userId": user, "groupId": "acme-1", "traits": {"name": "Acme"}}
            for user in ("u-ada", "u-cid")
        ),
    )
    account = await eventually(lambda: account_with_users(server, "acme-1", 2))
    await sign_in(page, server, at=f"#/profiles/account/{account}")

    members = page.locator("#account-users tbody tr")
    await expect(members.locator("td:first-child")).to_have_text(["u-cid", "u-ada"])  # newest profile first
    await expect(members.nth(1).locator("td").nth(1)).to_have_text("ada@acme.com")
    await members.get_by_role("link", name="u-ada").click()
    await expect(page.get_by_role("heading", name=re.compile("User u-ada"))).to_be_visible()
    await page.get_by_role("link", name="acme-1").click()
    await expect(page.locator("#account-users")).to_contain_text("u-cid")


async def account_with_users(server: Any, group_id: str, count: int) -> int | None:
    response = await call(server, "GET", "/api/accounts", headers=admin_auth(), params={"group_id": group_id})
    if response.status_code != 200:
        return None
    account: int = response.json()["id"]
    users = (await admin(server, "GET", f"/api/accounts/{account}/users"))["users"]
    return account if len(users) == count else None


RED = "rgb(179, 38, 30)"  # --danger


async def test_activity_colours_outcomes_by_severity_and_shows_the_reason_once_and_details_as_fields(
    page, server, segment_api
):
    await send_to_fake_segment(server, segment_api, synchronized_segments=["ALL"], synchronized_properties=["plan"])
    segment_api.fail(400, 1)
    await via_batch(server, identify("u-act", {"plan": "pro"}))
    user = await eventually(lambda: user_found(server, "u-act"))
    await eventually(lambda: activity_has(server, user["id"], "outgoing.user.dead_letter"))
    await via_batch(server, identify("u-act", {"plan": "max"}))
    await eventually(lambda: activity_has(server, user["id"], "outgoing.user.success"))
    await via_batch(server, {"type": "track", "userId": "u-act", "event": "Page Scrolled"})  # not in send_events
    await eventually(lambda: activity_has(server, user["id"], "outgoing.user.skip"))
    await sign_in(page, server, at=f"#/profiles/user/{user['id']}")

    skip = page.locator('#activity tr[data-action="outgoing.user.skip"]')
    await expect(skip).to_have_attribute("data-severity", "neutral")
    await expect(skip.locator(".activity-reason")).to_have_count(1)
    assert await skip.locator(".activity-reason").evaluate("node => getComputedStyle(node).color") != RED
    assert await skip.locator(".action").evaluate("node => getComputedStyle(node).color") != RED
    # The reason is said once: not again among the fields, and no JSON anywhere in the row.
    assert "reason" not in await skip.locator("dl.fields dt").all_inner_texts()
    assert "{" not in await skip.inner_text()

    sent = page.locator('#activity tr[data-action="outgoing.user.success"]')
    await expect(sent).to_have_attribute("data-severity", "ok")
    assert await sent.locator(".action").evaluate("node => getComputedStyle(node).color") == "rgb(27, 122, 61)"
    names, values = await sent.locator("dt").all_inner_texts(), await sent.locator("dd").all_inner_texts()
    fields = dict(zip(names, values, strict=True))
    assert fields["type"] == "identify" and fields["traits.plan"] == "max"

    failed = page.locator('#activity tr[data-action="outgoing.user.dead_letter"]')
    await expect(failed).to_have_attribute("data-severity", "error")
    assert await failed.locator(".action").evaluate("node => getComputedStyle(node).color") == RED
    assert await failed.locator(".activity-reason").evaluate("node => getComputedStyle(node).color") == RED
    await expect(failed.locator("dl.fields")).to_contain_text("400")


async def test_weeks_without_usage_draw_no_bar(page, server):
    await via_batch(
        server, {"type": "track", "userId": "u-use", "event": "Exported", "properties": {"feature": "export"}}
    )
    user = await eventually(lambda: user_found(server, "u-use"))
    await eventually(lambda: usage_counted(server, user["id"]))
    await sign_in(page, server, at=f"#/profiles/user/{user['id']}")

    weekly = page.get_by_role("heading", name="Weekly trend (12 ISO weeks)").locator("xpath=following-sibling::ul")
    await expect(weekly.locator("li")).to_have_count(12)
    await expect(weekly.locator(".bar:visible")).to_have_count(1)
    await expect(weekly.locator("li").last.locator(".bar-value")).to_have_text("1")


async def usage_counted(server: Any, user: int) -> bool:
    return any(week["count"] for week in (await admin(server, "GET", f"/api/users/{user}/usage"))["trend"])


async def test_every_page_looks_right_at_1400_by_900(page, server, segment_api, screenshots, request, capsys):
    await admin(
        server,
        "POST",
        "/api/segments",
        json={"name": "Paying", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
    )
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
    # Its own screenshots: the folder is the session's, and other tests add theirs (the Setup page's write keys).
    assert {f"{backend}-{name}.png" for name in pages} <= {path.name for path in screenshots.glob(f"{backend}-*.png")}


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
    await expect(page.locator("#setting-segment_api_host-error")).to_have_text(
        "Segment API host: must be a URL such as https://api.segment.io"
    )
    await expect(page.locator("#settings-status")).to_have_text(
        "Not saved: Segment API host: must be a URL such as https://api.segment.io"
    )
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


async def test_setup_shows_the_public_url_where_it_differs_from_the_dashboards_address(page, live_server_factory):
    # Behind a proxy, or opened through an internal address: Segment and websites reach PUBLIC_URL.
    server = live_server_factory(public_url="https://connector.example.com/")
    await sign_in(page, server, at="#/setup")
    await expect(page.locator("#segment-endpoint")).to_have_text("https://connector.example.com/segment")
    await expect(page.locator("#v1-endpoint")).to_have_text("https://connector.example.com")
    await expect(page.locator("#write-key-snippet")).to_contain_text('_cdn = "https://connector.example.com"')
    await expect(page.locator("#write-key-npm")).to_contain_text('cdnURL: "https://connector.example.com"')


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
    await page.get_by_role("button", name="Copy the key").click()
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


# --- the settings page as a first-time user lives it ---------------------------------------------------

PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def create_segment(server: Any, name: str, entity: str = "user") -> None:
    rule = PRO if entity == "user" else {"attribute": "traits.employees", "op": "gt", "value": 100}
    await admin(server, "POST", "/api/segments", json={"name": name, "entity": entity, "rule": rule})


async def open_settings(page: Page, server: Any) -> dict[str, Any]:
    schema: dict[str, Any] = await admin(server, "GET", "/settings.schema.json")
    await sign_in(page, server, at="#/settings")
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    return schema


def editor(page: Page, name: str) -> Any:
    return page.locator(f'.field[data-field="{name}"]')


async def save_settings(page: Page) -> None:
    await page.get_by_role("button", name="Save settings").click()


async def test_a_misspelled_segment_is_refused_at_its_field_with_the_closest_name_and_nothing_is_stored(page, server):
    await create_segment(server, "Pro users")
    await open_settings(page, server)

    await page.get_by_label("User segments to send: another name").fill("Pro userz")
    await save_settings(page)

    message = "User segments to send: no user segment named 'Pro userz'; did you mean 'Pro users'?"
    await expect(page.locator("#setting-synchronized_segments-error")).to_have_text(message)
    await expect(page.locator("#settings-status")).to_have_text(f"Not saved: {message}")
    assert (await admin(server, "GET", "/api/settings"))["version"] == 0


async def test_the_icp_is_edited_in_a_form_whose_json_view_shows_the_same_value(page, server):
    await open_settings(page, server)
    icp = editor(page, "icp")

    await icp.get_by_label("Score every account").check()
    await icp.get_by_role("button", name="Add a rule").click()
    await icp.locator('[data-path="icp.rules.0.rule"]').fill(json.dumps(PRO))
    await icp.locator('[data-path="icp.rules.0.points"]').fill("10")
    await icp.get_by_label("Good from").fill("10")
    await icp.get_by_label("Medium from").fill("5")
    expected = {"rules": [{"rule": PRO, "points": 10}], "good_at": 10, "medium_at": 5}

    await icp.get_by_role("button", name="Edit as JSON").click()
    assert json.loads(await icp.get_by_label("Ideal customer profile as JSON").input_value()) == expected
    # An edit in the JSON view shows in the form.
    await icp.get_by_label("Ideal customer profile as JSON").fill(json.dumps({**expected, "good_at": 20}))
    await icp.get_by_role("button", name="Edit as a form").click()
    await expect(icp.get_by_label("Good from")).to_have_value("20")

    await save_settings(page)
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    assert (await settings_of(server))["icp"] == {**expected, "good_at": 20}

    # A rule the rule language refuses: named at the rule's own input.
    await icp.locator('[data-path="icp.rules.0.rule"]').fill(json.dumps({"attribute": "traits.plan", "op": "is"}))
    await save_settings(page)
    await expect(icp.locator('[data-path="icp.rules.0.rule"]')).to_have_attribute("aria-invalid", "true")
    await expect(page.locator("#setting-icp-error")).to_contain_text(
        "Ideal customer profile, Rules, entry 1, Rule, op: unknown operator"
    )
    assert (await settings_of(server))["icp"] == {**expected, "good_at": 20}


async def test_segment_events_are_edited_in_a_form_with_the_segment_picked_from_the_existing_ones(page, server):
    await create_segment(server, "Pro users")
    await create_segment(server, "Big accounts", "account")
    await open_settings(page, server)
    events = editor(page, "segment_events")

    await events.get_by_role("button", name="Add a segment event").click()
    segment = events.get_by_label("Entry 1: Segment", exact=True)
    options = await segment.locator("option").all_text_contents()
    assert options == ["Pick a segment…", "Pro users", "Big accounts"]
    await segment.select_option("Pro users")
    await events.get_by_label("Entry 1: Added event", exact=True).fill("Pro Started")
    await events.get_by_label("Entry 1: send Removed event").check()
    await events.get_by_label("Entry 1: Removed event", exact=True).fill("Pro Ended")
    await events.get_by_label("Properties: another name").fill("plan")
    await events.get_by_role("button", name="Add to Properties").click()
    await save_settings(page)
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    entry = {
        "segment": "Pro users",
        "added": "Pro Started",
        "changed": None,
        "removed": "Pro Ended",
        "properties": ["plan"],
        "timestamp": None,
    }
    assert (await settings_of(server))["segment_events"] == [entry]

    await page.reload()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await expect(events.get_by_label("Entry 1: Segment", exact=True)).to_have_value("Pro users")
    await events.get_by_role("button", name="Edit as JSON").click()
    assert json.loads(await events.get_by_label("Segment events as JSON").input_value()) == [entry]

    # Removing the entry and saving leaves no segment event.
    await events.get_by_role("button", name="Edit as a form").click()
    await events.get_by_role("button", name="Remove entry 1").click()
    await save_settings(page)
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    assert (await settings_of(server))["segment_events"] == []


async def test_json_that_does_not_parse_is_reported_in_words_and_stays_in_its_box(page, server):
    await open_settings(page, server)
    events = editor(page, "segment_events")
    await events.get_by_role("button", name="Edit as JSON").click()
    text = events.get_by_label("Segment events as JSON")
    await text.fill('[{"segment": "VIP",')

    await events.get_by_role("button", name="Edit as a form").click()
    await expect(page.locator("#setting-segment_events-error")).to_contain_text("Segment events: must be valid JSON: ")
    await expect(text).to_be_visible()
    await expect(text).to_have_value('[{"segment": "VIP",')
    await expect(text).to_have_attribute("aria-invalid", "true")

    await save_settings(page)
    await expect(page.locator("#settings-status")).to_contain_text("Not saved: Segment events: must be valid JSON: ")
    await expect(text).to_have_value('[{"segment": "VIP",')
    assert (await admin(server, "GET", "/api/settings"))["version"] == 0


async def test_leaving_unsaved_settings_asks_first_and_nothing_is_asked_once_they_are_saved(page, server):
    schema = await open_settings(page, server)
    asked: list[str] = []
    answer = {"accept": False}

    async def on_dialog(dialog: Dialog) -> None:
        asked.append(dialog.type)
        await (dialog.accept() if answer["accept"] else dialog.dismiss())

    page.on("dialog", on_dialog)
    forward = field(page, schema, "forward_events")
    await forward.check()

    # The address shows the new page before the question is put (hashchange runs once the hash has changed),
    # so each step waits for what the answer leads to: the address back, or the next page on screen.
    async with page.expect_event("dialog"):
        await page.get_by_role("link", name="Segments").click()
    await expect(page).to_have_url(f"{server.url}/#/settings")  # put back once the question was dismissed
    assert asked == ["confirm"]
    await expect(forward).to_be_checked()  # staying keeps the change

    await save_settings(page)
    await expect(page.locator("#settings-status")).to_contain_text("Saved")
    await page.get_by_role("link", name="Segments").click()
    await expect(page.get_by_role("heading", name="Segments", exact=True)).to_be_visible()
    assert asked == ["confirm"]  # saved: not asked

    await page.get_by_role("link", name="Settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await field(page, schema, "identify_by_email").check()
    answer["accept"] = True
    await page.get_by_role("link", name="Overview").click()
    await expect(page.get_by_role("heading", name="Overview", exact=True)).to_be_visible()  # drawn once accepted
    assert asked == ["confirm", "confirm"]

    await page.get_by_role("link", name="Settings").click()
    await expect(page.locator("#settings-status")).to_contain_text("Version")
    await field(page, schema, "identify_by_email").check()
    await page.close(run_before_unload=True)
    await eventually(lambda: asked[-1] == "beforeunload")


async def test_help_texts_show_code_as_code_not_backticks(page, server):
    await open_settings(page, server)
    help_text = page.locator("#setting-send_events-help")
    await expect(help_text.locator("code")).to_have_text("ALL")
    texts = await page.locator(".help").all_text_contents()
    assert texts and not any("`" in text for text in texts)
