"""`connector resync`: queue everyone in the outbound filter; unchanged payloads skipped unless --force."""

import asyncio

import sqlalchemy as sa
from click.testing import CliRunner

from connector import cli
from connector.core.environment import get_environment
from connector.core.models import OutboxItem, SegmentMembership, SyncRun
from connector.core.settings import ConnectorSettings
from connector.outbound import resync
from tests.support.app import basic_auth, drain
from tests.support.fake_segment import add_segment, configure, send_all, user_id_of


async def run_cli(monkeypatch, env, *args):
    monkeypatch.setenv("DATABASE_URL", env.database_url)
    get_environment.cache_clear()
    try:
        return await asyncio.to_thread(CliRunner().invoke, cli.main, list(args))
    finally:
        get_environment.cache_clear()


async def test_resync_sends_the_filter_once_and_again_with_force(client, runtime, segment_api, monkeypatch, env):
    await client.post(
        "/v1/batch",
        headers=basic_auth(),
        json={
            "batch": [
                {"type": "identify", "userId": f"u-{n}", "traits": {"email": f"u{n}@example.com"}} for n in range(5)
            ]
        },
    )
    await drain(runtime)
    vip = [await user_id_of(runtime, f"u-{n}") for n in (1, 3)]
    await add_segment(runtime, "VIP", vip)
    await add_segment(runtime, "Staff", [await user_id_of(runtime, "u-4")])
    await send_all(runtime)  # no write key yet: the first wave stays queued, then is sent below
    await configure(runtime, segment_api, synchronized_segments=["VIP"])
    await send_all(runtime)
    assert sorted(m["userId"] for m in segment_api.messages) == ["u-1", "u-3"]

    result = await run_cli(monkeypatch, env, "resync")
    assert result.exit_code == 0, result.output
    assert "2 profiles queued" in result.output
    await send_all(runtime)
    assert len(segment_api.messages) == 2  # unchanged: nothing new to say

    result = await run_cli(monkeypatch, env, "resync", "--force")
    assert result.exit_code == 0, result.output
    await send_all(runtime)
    assert sorted(m["userId"] for m in segment_api.messages) == ["u-1", "u-1", "u-3", "u-3"]
    assert len(set(segment_api.message_ids())) == 2  # the same messages: Segment deduplicates them

    await configure(runtime, segment_api, synchronized_segments=["VIP", "Staff"])
    result = await run_cli(monkeypatch, env, "resync", "--segment", "Staff")
    assert "1 profiles queued" in result.output
    await send_all(runtime)
    assert segment_api.messages[-1]["userId"] == "u-4" and len(segment_api.messages) == 5

    result = await run_cli(monkeypatch, env, "resync", "--segment", "Nope")
    assert result.exit_code == 2 and "no segment named 'Nope'" in result.output


async def test_resync_with_force_still_sends_false_for_a_segment_segment_was_told_of(
    client, runtime, segment_api, monkeypatch, env
):
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)
    user = await user_id_of(runtime, "u-1")
    vip = await add_segment(runtime, "VIP", [user])
    await configure(runtime, segment_api, synchronized_segments=["ALL"], segment_membership_traits=True)
    assert (await run_cli(monkeypatch, env, "resync")).exit_code == 0
    await send_all(runtime)
    assert segment_api.messages[-1]["traits"]["vip"] is True
    async with runtime.engine.begin() as conn:  # left VIP without a transition: only resync will say so
        await conn.execute(
            sa.delete(SegmentMembership.__table__).where(SegmentMembership.__table__.c.segment_id == vip)
        )
    assert (await run_cli(monkeypatch, env, "resync", "--force")).exit_code == 0
    await send_all(runtime)
    assert segment_api.messages[-1]["traits"] == {"hull_segments": [], "vip": False}


async def test_resync_sends_the_added_events_of_segment_events_only_when_asked(
    client, runtime, segment_api, monkeypatch, env
):
    await client.post(
        "/v1/batch",
        headers=basic_auth(),
        json={"batch": [{"type": "identify", "userId": f"u-{n}", "traits": {"plan": f"p{n}"}} for n in range(4)]},
    )
    await drain(runtime)
    members = [await user_id_of(runtime, user_id) for user_id in ("u-1", "u-2")]
    vip = await add_segment(runtime, "VIP", members)
    await add_segment(runtime, "Others", [await user_id_of(runtime, "u-3")])
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["VIP"],
        segment_events=[
            {"segment": "VIP", "added": "VIP Added", "properties": [{"from": "traits.plan", "to": "plan"}]},
            {"segment": "Others", "removed": "Other Removed"},
        ],
    )

    result = await run_cli(monkeypatch, env, "resync")
    assert result.exit_code == 0, result.output
    assert "added events" not in result.output
    await send_all(runtime)
    assert sorted((m["type"], m["userId"]) for m in segment_api.messages) == [("identify", "u-1"), ("identify", "u-2")]

    result = await run_cli(monkeypatch, env, "resync", "--added")
    assert result.exit_code == 0, result.output
    assert "2 added events queued for sending" in result.output
    await send_all(runtime)
    added = [m for m in segment_api.messages if m["type"] == "track"]
    assert sorted((m["event"], m["userId"], m["properties"]["plan"]) for m in added) == [
        ("VIP Added", "u-1", "p1"),
        ("VIP Added", "u-2", "p2"),
    ]

    # Asked again: the same events, under the same ids, for Segment to drop as duplicates.
    result = await run_cli(monkeypatch, env, "resync", "--added", "--segment", "VIP")
    assert "2 added events queued for sending" in result.output
    await send_all(runtime)
    again = [m for m in segment_api.messages if m["type"] == "track"][2:]
    assert sorted(m["messageId"] for m in again) == sorted(m["messageId"] for m in added)

    # A member who left meanwhile is not announced.
    async with runtime.engine.begin() as conn:
        await conn.execute(
            sa.delete(SegmentMembership.__table__).where(
                SegmentMembership.__table__.c.segment_id == vip, SegmentMembership.__table__.c.entity_id == members[0]
            )
        )
    assert "1 added events queued" in (await run_cli(monkeypatch, env, "resync", "--added")).output
    await send_all(runtime)
    assert [m["userId"] for m in segment_api.messages if m["type"] == "track"][4:] == ["u-2"]


async def test_a_resync_larger_than_a_chunk_queues_each_member_once_a_chunk_at_a_time(client, runtime, monkeypatch):
    await client.post(
        "/v1/batch", headers=basic_auth(), json={"batch": [{"type": "identify", "userId": f"u-{n}"} for n in range(8)]}
    )
    await drain(runtime)
    ids = [await user_id_of(runtime, f"u-{n}") for n in range(8)]
    await add_segment(runtime, "A", ids[:5])
    await add_segment(runtime, "B", ids[3:7])  # u-3 and u-4 in both; u-7 in neither
    monkeypatch.setattr(resync, "CHUNK", 3)
    totals: list[int] = []
    chunks: list[int] = []
    async with runtime.engine.begin() as conn:
        await conn.execute(OutboxItem.__table__.delete())

    queued = await resync.resync(
        runtime.engine,
        ConnectorSettings(synchronized_segments=["A", "B"]),
        progress=chunks.append,
        started=totals.append,
    )

    assert (queued, totals, chunks) == (7, [7], [3, 3, 1])
    async with runtime.engine.connect() as conn:
        keys = (await conn.execute(sa.select(OutboxItem.__table__.c.key))).scalars().all()
        run = (await conn.execute(sa.select(SyncRun.__table__))).one()
    assert sorted(keys) == sorted(f"user:{user}" for user in ids[:7])
    assert (run.trigger, run.segments, run.users, run.accounts) == ("resync", ["A", "B"], 7, 0)
