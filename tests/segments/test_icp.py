"""The ideal-customer-profile scanner: icp.score and icp.fit of accounts, from the `icp` setting.

Scores and fits are written here by hand for a set of accounts, then after a change of the rules,
a change of an account and the removal of the setting; on SQLite and PostgreSQL.
"""

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connector.core.models import utcnow
from connector.core.settings import IcpSettings
from connector.core.spec import format_timestamp
from connector.segments import schedule
from connector.segments.icp import due_on_schedule, fit_of
from connector.service.use_cases import rescore_accounts
from tests.support.app import admin_auth, basic_auth, drain
from tests.support.fake_segment import configure, send_all

ACCOUNTS = {
    "acme": {"employees": 500, "industry": "Software", "plan": "enterprise"},
    "bolt": {"employees": 120, "industry": "Retail", "plan": "pro"},
    "cork": {"employees": 10, "industry": "Software", "plan": "free"},
    "dune": {"employees": 50, "industry": "Software", "plan": "pro"},
    "echo": {},
    "fjord": {"employees": 200, "industry": "Software", "plan": "free", "country": "FR"},
}
ICP: dict[str, Any] = {
    "rules": [
        {"rule": {"attribute": "traits.employees", "op": "gte", "value": 100}, "points": 40},
        {"rule": {"attribute": "traits.industry", "op": "eq", "value": "Software"}, "points": 30},
        {"rule": {"attribute": "traits.plan", "op": "in", "value": ["pro", "enterprise"]}, "points": 20},
        {"rule": {"attribute": "traits.country", "op": "eq", "value": "FR"}, "points": -10},
    ],
    "good_at": 70,
    "medium_at": 40,
}


async def put_settings(client, **values):
    return await client.put("/api/settings", headers=admin_auth(), json=values)


async def group(client, group_id, traits, user_id=None, at="2024-05-01T10:00:00Z"):
    response = await client.post(
        "/v1/group",
        headers=basic_auth(),
        json={"userId": user_id or f"user-of-{group_id}", "groupId": group_id, "traits": traits, "timestamp": at},
    )
    assert response.status_code == 200, response.text


async def account(client, group_id):
    response = await client.get("/api/accounts", params={"group_id": group_id}, headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()


async def scores(client):
    return {group_id: tuple((await account(client, group_id))["icp"].values()) for group_id in ACCOUNTS}


async def accounts_stored(client, runtime):
    assert (await put_settings(client, handle_accounts=True)).status_code == 200
    for group_id, traits in ACCOUNTS.items():
        await group(client, group_id, traits)
    await drain(runtime)


async def test_scores_and_fits_follow_the_rules_and_their_changes(client, runtime):
    await accounts_stored(client, runtime)
    assert await scores(client) == dict.fromkeys(ACCOUNTS, (None, None))  # no setting, no score

    assert (await put_settings(client, icp=ICP)).status_code == 200
    assert await scores(client) == {
        "acme": (90, "good"),
        "bolt": (60, "medium"),
        "cork": (30, "poor"),
        "dune": (50, "medium"),
        "echo": (0, "poor"),
        "fjord": (60, "medium"),
    }

    changed = {**ICP, "good_at": 80}
    changed["rules"] = [*ICP["rules"][:1], {**ICP["rules"][1], "points": 50}, *ICP["rules"][2:]]
    assert (await put_settings(client, icp=changed)).status_code == 200
    assert await scores(client) == {
        "acme": (110, "good"),
        "bolt": (60, "medium"),
        "cork": (50, "medium"),
        "dune": (70, "medium"),
        "echo": (0, "poor"),
        "fjord": (80, "good"),
    }

    # an account that changes is scored again as its group call is processed
    await group(client, "cork", {"employees": 150}, at="2024-05-02T10:00:00Z")
    await group(client, "echo", {"country": "FR"}, at="2024-05-02T10:00:00Z")
    await drain(runtime)
    assert (await scores(client))["cork"] == (90, "good")
    assert (await scores(client))["echo"] == (-10, "poor")

    assert (await put_settings(client, icp=None)).status_code == 200
    assert await scores(client) == dict.fromkeys(ACCOUNTS, (None, None))


async def test_an_account_created_after_the_setting_is_scored_as_it_arrives(client, runtime):
    assert (await put_settings(client, handle_accounts=True, icp=ICP)).status_code == 200
    await group(client, "gale", {"employees": 1000, "industry": "Software"})
    await drain(runtime)
    assert (await account(client, "gale"))["icp"] == {"score": 70, "fit": "good"}


def test_the_thresholds_are_inclusive():
    icp = IcpSettings.model_validate({"rules": [], "good_at": 10, "medium_at": 5})
    assert [fit_of(icp, score) for score in (11, 10, 9, 5, 4, -3)] == [
        "good",
        "good",
        "medium",
        "medium",
        "poor",
        "poor",
    ]


async def test_a_bad_icp_setting_names_the_field_and_stores_nothing(client, runtime):
    assert (await put_settings(client, icp=ICP)).status_code == 200
    before = (await client.get("/api/settings", headers=admin_auth())).json()
    bad_rule = {**ICP, "rules": [ICP["rules"][0], {"rule": {"attribute": "traits.plan", "op": "is"}, "points": 5}]}
    for document, field in [
        (bad_rule, "icp.rules.1.rule.op"),
        ({**ICP, "rules": [{"rule": {"event": "Signed Up"}, "points": 5}]}, "icp.rules.0.rule.event"),
        (
            {**ICP, "rules": [{"rule": {"attribute": "icp.score", "op": "gt", "value": 1}, "points": 5}]},
            "icp.rules.0.rule",
        ),
        (
            {**ICP, "rules": [{"rule": {"attribute": "usage.events_30d", "op": "gt", "value": 1}, "points": "x"}]},
            "icp.rules.0.points",
        ),
        ({**ICP, "medium_at": 90}, "icp.medium_at"),
        ({**ICP, "rules": [{"rule": {"all": []}, "points": 1, "weight": 2}]}, "icp.rules.0.weight"),
        ({"rules": []}, "icp.good_at"),
        ("strong", "icp"),
    ]:
        response = await put_settings(client, icp=document)
        assert response.status_code == 400, (document, response.text)
        body = response.json()
        assert body["errors"][0]["field"] == field, body
        assert body["message"].startswith(f"{field}: "), body
    assert (await client.get("/api/settings", headers=admin_auth())).json() == before


async def test_segments_read_icp_of_accounts_and_account_icp_of_users(client, runtime):
    await accounts_stored(client, runtime)
    for name, entity, rule in [
        ("Good fit", "account", {"attribute": "icp.fit", "op": "eq", "value": "good"}),
        ("Scored 60 or more", "account", {"attribute": "icp.score", "op": "gte", "value": 60}),
        ("At a good fit", "user", {"attribute": "account.icp.fit", "op": "eq", "value": "good"}),
        ("Unscored account", "user", {"attribute": "account.icp.score", "op": "not_exists"}),
    ]:
        response = await client.post(
            "/api/segments", headers=admin_auth(), json={"name": name, "entity": entity, "rule": rule}
        )
        assert response.status_code == 201, response.text

    async def members():
        found = {}
        for group_id in ACCOUNTS:
            profile = await account(client, group_id)
            user = await client.get("/api/users", params={"user_id": f"user-of-{group_id}"}, headers=admin_auth())
            found[group_id] = set(profile["segments"]) | set(user.json()["segments"])
        return found

    assert await members() == {group_id: {"Unscored account"} for group_id in ACCOUNTS}
    assert (await put_settings(client, icp=ICP)).status_code == 200
    assert await members() == {
        "acme": {"Good fit", "Scored 60 or more", "At a good fit"},
        "bolt": {"Scored 60 or more"},
        "cork": set(),
        "dune": set(),
        "echo": set(),
        "fjord": {"Scored 60 or more"},
    }


async def test_icp_is_sent_in_group_and_identify_traits(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        handle_accounts=True,
        synchronized_segments=["ALL"],
        synchronized_account_segments=["ALL"],
        synchronized_properties=["account.icp.fit"],
        synchronized_account_properties=["icp.score", "icp.fit"],
    )
    assert (await put_settings(client, icp=ICP)).status_code == 200
    await group(client, "acme", ACCOUNTS["acme"])
    await drain(runtime)
    await send_all(runtime)
    identify = [m for m in segment_api.messages if m["type"] == "identify"][-1]
    group_call = [m for m in segment_api.messages if m["type"] == "group"][-1]
    assert identify["traits"] == {"account_icp_fit": "good", "hull_segments": []}
    assert group_call["traits"] == {"icp_score": 90, "icp_fit": "good"}


def usage_icp(events: int) -> dict[str, Any]:
    """An ICP that scores an account good with at least `events` events in the last 30 days."""
    rule = {"attribute": "usage.events_30d", "op": "gte", "value": events}
    return {"rules": [{"rule": rule, "points": 10}], "good_at": 10, "medium_at": 5}


async def acme_scored_on_usage(client, runtime, events: int) -> datetime:
    """Acme with `events` recent events, scored good by usage_icp(events); returns the time of the last one."""
    assert (await put_settings(client, handle_accounts=True, icp=usage_icp(events))).status_code == 200
    await group(client, "acme", {})
    now = utcnow()
    for number in range(events):
        response = await client.post(
            "/v1/track",
            headers=basic_auth(),
            json={
                "userId": "user-of-acme",
                "event": "Feature Used",
                "properties": {"feature": "export"},
                "timestamp": format_timestamp(now - timedelta(minutes=number)),
            },
        )
        assert response.status_code == 200
    await drain(runtime)
    assert (await account(client, "acme"))["icp"] == {"score": 10, "fit": "good"}
    return now


async def test_a_rule_on_usage_is_rescored_on_the_schedule_as_time_passes(client, runtime):
    assert due_on_schedule(IcpSettings.model_validate(usage_icp(3)))
    assert not due_on_schedule(IcpSettings.model_validate(ICP))
    now = await acme_scored_on_usage(client, runtime, events=3)

    settings = await runtime.settings.current()
    assert await rescore_accounts(runtime.engine, settings, now + timedelta(days=28)) == 0  # still in the window
    assert await rescore_accounts(runtime.engine, settings, now + timedelta(days=31)) == 1
    assert (await account(client, "acme"))["icp"] == {"score": 0, "fit": "poor"}


async def test_the_icp_schedule_runs_once_per_interval_whichever_worker_asks(client, runtime):
    now = await acme_scored_on_usage(client, runtime, events=1)

    settings, every = await runtime.settings.current(), timedelta(days=5).total_seconds()
    # The first run of the schedule: the event is still within 30 days, nothing changes.
    assert await rescore_accounts(runtime.engine, settings, now + timedelta(days=28), every=every) == 0
    # Three days later the event is out of the window, but the schedule ran two days ago: not again yet.
    assert await rescore_accounts(runtime.engine, settings, now + timedelta(days=31), every=every) == 0
    assert (await account(client, "acme"))["icp"] == {"score": 10, "fit": "good"}
    # Once the interval has passed since that run, whichever worker asks next runs it.
    assert await rescore_accounts(runtime.engine, settings, now + timedelta(days=34), every=every) == 1
    assert (await account(client, "acme"))["icp"] == {"score": 0, "fit": "poor"}


async def test_the_schedule_runs_again_exactly_one_interval_after_its_last_run_and_not_a_second_sooner(runtime):
    async def claimed(at: datetime) -> bool:
        async with runtime.engine.begin() as conn:
            return await schedule.claim_run(conn, "icp", 3600, at)

    assert await claimed(datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC))  # never ran: due
    assert not await claimed(datetime(2026, 6, 15, 12, 0, 0, tzinfo=UTC))
    assert not await claimed(datetime(2026, 6, 15, 12, 59, 59, tzinfo=UTC))
    assert await claimed(datetime(2026, 6, 15, 13, 0, 0, tzinfo=UTC))  # exactly an hour after the last run
    assert not await claimed(datetime(2026, 6, 15, 13, 59, 59, tzinfo=UTC))  # measured from that run, not the first
    assert await claimed(datetime(2026, 6, 15, 14, 0, 0, tzinfo=UTC))


@pytest.mark.postgres_only  # SQLite runs one worker
async def test_of_two_workers_asking_at_once_one_runs_the_schedule_and_the_other_waits_then_skips(runtime):
    now = utcnow()
    async with runtime.engine.begin() as conn:  # a run two minutes ago: its record exists, and is stale
        assert await schedule.claim_run(conn, "icp", 60, now - timedelta(seconds=120))
    async with runtime.engine.connect() as first, runtime.engine.connect() as second:
        await first.begin()
        await second.begin()
        assert await schedule.claim_run(first, "icp", 60, now)
        waiting = asyncio.create_task(schedule.claim_run(second, "icp", 60, now + timedelta(seconds=1)))
        await asyncio.sleep(0.3)
        assert not waiting.done()  # held by the first worker's run until it ends
        await first.commit()
        assert await waiting is False
        await second.commit()
    async with runtime.engine.begin() as conn:
        assert await schedule.claim_run(conn, "icp", 60, now + timedelta(seconds=61))  # due again
