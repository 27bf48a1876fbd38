"""Delivery to Segment: batching, retries, dead letters and replay, crashes, claims."""

import json
from collections import Counter
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from segment.analytics.request import APIError

from connector.core.kinds import OutboxKind
from connector.core.models import DeadLetter, OutboxItem, utcnow
from connector.flow import outbox as outbox_module
from connector.outbound import acknowledge, sender, transport
from tests.support.app import admin_auth, basic_auth, drain
from tests.support.delivery import replay_from_the_command_line, rows
from tests.support.fake_segment import configure, send_all, user_id_of

outbox = OutboxItem.__table__
dead_letters = DeadLetter.__table__


@pytest.fixture
def quick_retries(monkeypatch):
    """Backoff in milliseconds, so a test sees many retries; small batches, so it sees many batches."""
    monkeypatch.setattr(transport, "BACKOFF_BASE_SECONDS", 0.001)
    monkeypatch.setattr(transport, "BACKOFF_CAP_SECONDS", 0.01)


async def events(client, runtime, count, prefix="e"):
    messages = [
        {"type": "track", "userId": f"u-{n % 7}", "event": "Order Completed", "messageId": f"{prefix}-{n}"}
        for n in range(count)
    ]
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": messages})
    assert response.status_code == 200
    await drain(runtime)
    return {m["messageId"] for m in messages}


async def send_until_empty(runtime, **options):
    for _ in range(500):
        await send_all(runtime, **options)
        if not await rows(runtime):
            return
    raise AssertionError("outbox never emptied")


@pytest.mark.parametrize("status,retry_after", [(500, None), (429, "0")])
async def test_thirty_percent_failures_deliver_everything_exactly_once(
    client, runtime, segment_api, quick_retries, monkeypatch, status, retry_after
):
    monkeypatch.setattr(transport, "MAX_BATCH_MESSAGES", 10)
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=True)
    expected = await events(client, runtime, 150)
    segment_api.fail_fraction(status, 0.3, retry_after=retry_after)
    await send_until_empty(runtime)
    ids = segment_api.message_ids()
    tracks = [i for i in ids if not i.startswith("hsc-")]
    assert set(tracks) == expected
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert segment_api.requests > len(segment_api.bodies)  # faults did happen
    assert await rows(runtime, dead_letters) == []


async def test_retry_after_is_honoured_and_kept_in_the_row(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1", "traits": {"email": "a@b.co"}})
    await drain(runtime)
    segment_api.fail(429, count=1, retry_after=120)
    before = utcnow()
    await send_all(runtime)
    [row] = await rows(runtime)
    assert row.attempts == 1 and "429" in row.last_error and row.claimed_until is None
    assert row.available_at >= before + timedelta(seconds=120)
    assert segment_api.messages == []


async def test_bad_request_dead_letters_then_replay_delivers_once(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=True)
    expected = await events(client, runtime, 5)
    segment_api.fail(400, count=1)
    await send_all(runtime)
    assert await rows(runtime) == [] and segment_api.messages == []
    assert (await client.get("/api/dead-letters")).status_code == 401
    listed = (await client.get("/api/dead-letters", headers=admin_auth())).json()
    assert listed["waiting"] == 10  # 5 tracks and an identify for each of their 5 users
    assert all(d["status_code"] == 400 and "400" in d["reason"] for d in listed["dead_letters"])
    assert [d["id"] for d in listed["dead_letters"]] == sorted((d["id"] for d in listed["dead_letters"]), reverse=True)
    assert (
        len((await client.get("/api/dead-letters", headers=admin_auth(), params={"limit": "2"})).json()["dead_letters"])
        == 2
    )
    negative = await client.get(
        "/api/dead-letters", headers=admin_auth(), params={"limit": "-1"}
    )  # a 500 on PostgreSQL
    assert negative.status_code == 200 and negative.json()["dead_letters"] == []

    segment_api.fail(400, count=1)  # still broken: the replay fails and the letters stay
    assert (await client.post("/api/dead-letters/replay", headers=admin_auth())).json() == {"replayed": 0, "failed": 10}
    segment_api.heal()
    one = listed["dead_letters"][0]["id"]
    answer = await client.post("/api/dead-letters/replay", headers=admin_auth(), json={"ids": [one]})
    assert answer.json() == {"replayed": 1, "failed": 0}
    assert (await client.post("/api/dead-letters/replay", headers=admin_auth())).json() == {"replayed": 9, "failed": 0}
    assert (await client.post("/api/dead-letters/replay", headers=admin_auth())).json() == {"replayed": 0, "failed": 0}
    ids = segment_api.message_ids()
    assert len(ids) == len(set(ids)) == 10 and expected <= set(ids)
    assert (await client.get("/api/dead-letters", headers=admin_auth())).json()["waiting"] == 0
    everything = (
        await client.get("/api/dead-letters", headers=admin_auth(), params={"include_replayed": "true"})
    ).json()
    assert all(d["replayed_at"] for d in everything["dead_letters"]) and len(everything["dead_letters"]) == 10


async def test_cli_replay(client, runtime, segment_api, monkeypatch, env):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)
    segment_api.fail(403, count=1)
    await send_all(runtime)
    output = await replay_from_the_command_line(env, monkeypatch)
    assert "1 dead letters delivered, 0 failed" in output
    assert [m["userId"] for m in segment_api.messages] == ["u-1"]


async def test_message_over_32_kb_is_dead_lettered_with_its_reason(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["a", "b"])
    for name in "ab":
        await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1", "traits": {name: "x" * 20_000}})
    await drain(runtime)
    await send_all(runtime)
    [letter] = await rows(runtime, dead_letters)
    assert "32768" in letter.reason and letter.message["userId"] == "u-1"
    assert segment_api.messages == [] and await rows(runtime) == []


@pytest.mark.parametrize("status", [501, 505, 401, 413])
async def test_statuses_that_are_not_retried(client, runtime, segment_api, status):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)
    segment_api.fail(status, count=1)
    await send_all(runtime)
    assert [letter.status_code for letter in await rows(runtime, dead_letters)] == [status]


@pytest.mark.parametrize("status", [408, 410, 429, 460, 500, 502, 503, 504, 599])
def test_statuses_that_are_retried(status):
    assert transport.classify(APIError(status, "x", "y")).retry
    assert not transport.classify(APIError(400, "x", "y")).retry


async def test_a_stalled_request_is_retried_after_the_timeout(client, runtime, segment_api, quick_retries):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)
    segment_api.stall(1.5, count=1)
    await sender.Sender(runtime, timeout=0.3).send_once()
    [row] = await rows(runtime)
    assert row.attempts == 1 and "Timeout" in row.last_error
    await send_until_empty(runtime, timeout=5)
    assert {m["userId"] for m in segment_api.messages} == {"u-1"}


async def fail_rounds(runtime, segment_api, rounds, elapsed_before_each=None):
    """Segment answers 503 to `rounds` sends of the queued identify; each round starts as if its backoff was over."""
    segment_api.fail_fraction(503, 1.0)
    for round_number in range(rounds):
        values = {"available_at": utcnow()}
        if elapsed_before_each is not None:
            values["failing_since"] = utcnow() - elapsed_before_each(round_number)
        async with runtime.engine.begin() as conn:
            await conn.execute(outbox.update().where(outbox.c.failing_since.is_not(None)).values(**values))
            await conn.execute(
                outbox.update().where(outbox.c.failing_since.is_(None)).values(available_at=values["available_at"])
            )
        await sender.Sender(runtime).send_once()


async def one_queued_identify(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)


async def test_a_row_failing_ten_times_in_a_row_is_still_queued_with_ten_attempts(client, runtime, segment_api):
    await one_queued_identify(client, runtime, segment_api)
    await fail_rounds(runtime, segment_api, 10)
    [row] = await rows(runtime)
    assert row.attempts == 10 and "503" in row.last_error
    assert await rows(runtime, dead_letters) == []


@pytest.mark.parametrize(
    "failing_for,given_up",
    [
        (timedelta(hours=3, minutes=59, seconds=59), False),
        (timedelta(hours=4, seconds=1), True),
    ],
)
async def test_a_failing_row_is_dead_lettered_four_hours_after_its_first_failure(
    client, runtime, segment_api, failing_for, given_up
):
    await one_queued_identify(client, runtime, segment_api)
    await fail_rounds(runtime, segment_api, 1)
    await fail_rounds(runtime, segment_api, 1, elapsed_before_each=lambda _: failing_for)
    if given_up:
        assert await rows(runtime) == []
        [letter] = await rows(runtime, dead_letters)
        assert letter.status_code == 503 and letter.message["userId"] == "u-1"
    else:
        [row] = await rows(runtime)
        assert row.attempts == 2
        assert await rows(runtime, dead_letters) == []


async def test_a_delivery_that_keeps_failing_is_dead_lettered_four_hours_after_its_first_failure_not_its_last(
    client, runtime, segment_api, monkeypatch
):
    """The sender alone keeps the time of the first failure: nothing here writes `failing_since`."""
    await one_queued_identify(client, runtime, segment_api)
    first_failure = utcnow()
    clock = {"now": first_failure}
    for module in (outbox_module, sender, acknowledge):  # the claim, the round and its acknowledgement
        monkeypatch.setattr(module, "utcnow", lambda: clock["now"])
    segment_api.fail(500, count=3)

    await sender.Sender(runtime).send_once()
    clock["now"] = first_failure + timedelta(minutes=10)  # well past the first backoff
    await sender.Sender(runtime).send_once()
    [row] = await rows(runtime)
    assert row.attempts == 2 and "500" in row.last_error
    assert row.failing_since == first_failure

    clock["now"] = first_failure + timedelta(hours=4)
    await sender.Sender(runtime).send_once()
    assert await rows(runtime) == []
    [letter] = await rows(runtime, dead_letters)
    assert letter.status_code == 500 and letter.message["userId"] == "u-1"
    assert segment_api.requests == 3 and segment_api.messages == []


async def test_the_total_wait_before_dead_lettering_is_four_hours_plus_at_most_one_backoff_step(
    client, runtime, segment_api
):
    """Segment retries for 4 hours: so do we, whatever the jitter, and not longer than one more backoff."""
    await one_queued_identify(client, runtime, segment_api)
    waited = timedelta(0)  # the backoffs the sender asked for, lived through instantly
    for _ in range(500):
        await fail_rounds(runtime, segment_api, 1, elapsed_before_each=lambda _, waited=waited: waited)
        queued = await rows(runtime)
        if not queued:
            break
        waited += queued[0].available_at - utcnow()
    else:
        raise AssertionError("never dead-lettered")
    assert len(await rows(runtime, dead_letters)) == 1
    assert timedelta(hours=4) - timedelta(seconds=5) <= waited <= timedelta(hours=4, minutes=10)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=0, max_size=8000), st.integers(0, 5)), max_size=120))
def test_batches_stay_within_segment_limits_on_the_wire_and_keep_order(texts):
    """Measured as the transport writes them (json.dumps): non-ASCII escapes, spaces after , and :."""
    messages = [
        {"type": "identify", "userId": f"u-{n}", "traits": {"bio": text * repeat, "name": "Zoë Ünal"}}
        for n, (text, repeat) in enumerate(texts)
    ]
    groups = transport.batches(messages, transport.wire_size, "a-write-key")
    assert [m for group in groups for m in group] == messages
    for group in groups:
        body = json.dumps({"batch": group, "sentAt": "2026-11-23T02:03:28.184730+00:00", "writeKey": "a-write-key"})
        assert len(body.encode()) <= 500_000 or len(group) == 1


def test_a_batch_holds_at_most_2500_messages():
    messages = [{"type": "track", "userId": "u", "event": "E", "messageId": str(n)} for n in range(5001)]
    assert [len(group) for group in transport.batches(messages, transport.wire_size, "key")] == [2500, 2500, 1]


async def test_a_crash_between_send_and_ack_resends_the_same_message_ids(client, runtime, segment_api, monkeypatch):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=True)
    await events(client, runtime, 4)

    async def crash(*args, **kwargs):
        raise SystemError("killed between send and ack")

    monkeypatch.setattr(sender, "acknowledge", crash)
    with pytest.raises(SystemError):
        await sender.Sender(runtime, lease=60).send_once()
    first = sorted(segment_api.message_ids())
    assert len(first) == 4 + 4  # 4 tracks, identify for u-0..u-3
    monkeypatch.undo()
    assert (await sender.Sender(runtime).send_once()).claimed == 0  # the lease still holds the rows
    async with runtime.engine.begin() as conn:  # the lease runs out
        await conn.execute(outbox.update().values(claimed_until=utcnow() - timedelta(seconds=1)))
    await send_all(runtime)
    assert sorted(segment_api.message_ids()) == sorted(first * 2)
    assert await rows(runtime) == []


async def test_a_change_during_sending_keeps_the_row(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)
    async with runtime.engine.connect() as conn:
        claimed = await outbox_module.claim(conn, 10)
    user = await user_id_of(runtime, "u-1")
    async with runtime.engine.begin() as conn:
        await outbox_module.enqueue(conn, OutboxKind.USER, [user])
    await acknowledge.acknowledge(runtime.engine, acknowledge.Acknowledgement(done=claimed))
    [row] = await rows(runtime)
    assert row.version == claimed[0].version + 1 and row.claimed_until is None


async def test_nothing_is_sent_without_a_write_key(client, runtime, segment_api):
    await runtime.settings.save({"segment_api_host": segment_api.url, "synchronized_segments": ["ALL"]})
    await client.post("/v1/identify", headers=basic_auth(), json={"userId": "u-1"})
    await drain(runtime)
    await send_all(runtime)
    assert segment_api.requests == 0 and len(await rows(runtime)) == 1
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await send_all(runtime)
    assert [m["userId"] for m in segment_api.messages] == ["u-1"]


async def test_replay_refuses_a_body_that_is_not_an_object(client, runtime):
    response = await client.post("/api/dead-letters/replay", headers=admin_auth(), json=[1, 2])
    assert response.status_code == 400
    assert response.json()["field"] == "body"
