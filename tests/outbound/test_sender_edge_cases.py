"""The sender's retry, backoff and replay rules, pinned where mutation testing found them loose.

Each test names the rule; the expected values are written out by hand (Segment's statuses,
the backoff steps in seconds, the four-hour retry budget, the 475,000-byte batch), not read
from connector.outbound.sender.
"""

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from segment.analytics.request import APIError

from connector.core.models import DeadLetter, utcnow
from connector.core.settings import ConnectorSettings
from connector.flow import outbox
from connector.outbound import replay, sender, transport
from tests.support.app import basic_auth, drain
from tests.support.delivery import replay_from_the_command_line
from tests.support.fake_segment import FakeSegment, configure

dead_letters = DeadLetter.__table__


@pytest.mark.parametrize(
    "status,retried",
    [
        (499, False),
        (500, True),
        (599, True),
        (600, False),
        (601, False),
        (501, False),
        (505, False),
    ],
)
def test_server_errors_are_retried_only_from_500_to_599_except_501_and_505(status, retried):
    assert transport.classify(APIError(status, "code", "message")).retry is retried


def test_the_reason_of_a_refusal_is_cut_to_1000_characters():
    failure = transport.classify(APIError(400, "code", "x" * 5000))
    assert failure.reason.startswith("HTTP 400: xxx") and len(failure.reason) == 1000
    assert failure.status == 400


def test_a_network_error_is_retried_without_a_status_and_its_reason_cut_to_1000_characters():
    failure = transport.classify(ConnectionRefusedError("y" * 5000))
    assert failure.retry is True and failure.status is None
    assert failure.reason.startswith("ConnectionRefusedError: yyy") and len(failure.reason) == 1000


# attempts so far -> (shortest wait, longest wait) in seconds: equal jitter on 1 s doubling, capped at 600 s.
BACKOFF_TABLE = [
    (0, 0.5, 1.0),
    (1, 1.0, 2.0),
    (3, 4.0, 8.0),
    (9, 256.0, 512.0),
    (10, 300.0, 600.0),
    (30, 300.0, 600.0),
    (1000, 300.0, 600.0),
]


@pytest.mark.parametrize("attempts,shortest,longest", BACKOFF_TABLE)
def test_backoff_waits_between_half_a_step_and_a_whole_step(monkeypatch, attempts, shortest, longest):
    monkeypatch.setattr(random, "uniform", lambda low, high: low)
    assert transport.backoff_seconds(attempts) == shortest
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    assert transport.backoff_seconds(attempts) == longest


@pytest.mark.parametrize("attempts", [0, 3, 12])
def test_backoff_is_never_shorter_than_the_retry_after_segment_asked_for(attempts):
    assert transport.backoff_seconds(attempts, retry_after=3600.0) == 3600.0


def test_the_retry_budget_is_spent_at_exactly_four_hours():
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    assert not transport.retry_budget_spent(start, start + timedelta(hours=4) - timedelta(microseconds=1))
    assert transport.retry_budget_spent(start, start + timedelta(hours=4))
    assert transport.retry_budget_spent(start, start + timedelta(hours=9))


async def add_dead_letters(runtime, messages, status_code=None):
    async with runtime.engine.begin() as conn:
        await conn.execute(
            dead_letters.insert(),
            [
                {
                    "message": message,
                    "reason": "set aside by the test",
                    "status_code": status_code,
                    "created_at": utcnow(),
                }
                for message in messages
            ],
        )
        return list((await conn.execute(sa.select(dead_letters.c.id).order_by(dead_letters.c.id))).scalars())


def identify(n, size=0):
    return {"type": "identify", "userId": f"u-{n}", "messageId": f"replay-{n}", "traits": {"padding": "p" * size}}


async def test_replay_counts_every_letter_when_they_take_several_batches(runtime, segment_api):
    # 30 letters of about 20 KB: more than one 475,000-byte batch.
    await add_dead_letters(runtime, [identify(n, size=20_000) for n in range(30)])
    settings = ConnectorSettings(write_key=segment_api.write_key, segment_api_host=segment_api.url)
    assert await replay.replay(runtime.engine, settings) == {"replayed": 30, "failed": 0}
    assert len(segment_api.bodies) >= 2
    assert sorted(segment_api.message_ids()) == sorted(f"replay-{n}" for n in range(30))


async def test_a_failed_replay_counts_every_letter_and_records_the_new_status_and_reason(runtime, segment_api):
    await add_dead_letters(runtime, [identify(n, size=20_000) for n in range(30)])
    settings = ConnectorSettings(write_key=segment_api.write_key, segment_api_host=segment_api.url)
    segment_api.fail(403, count=10)
    assert await replay.replay(runtime.engine, settings) == {"replayed": 0, "failed": 30}
    async with runtime.engine.connect() as conn:
        letters = (await conn.execute(sa.select(dead_letters))).all()
    assert {(letter.status_code, letter.replayed_at) for letter in letters} == {(403, None)}
    assert all(letter.reason.startswith("HTTP 403") for letter in letters)


async def test_a_failed_replay_of_some_letters_leaves_the_others_untouched(runtime, segment_api):
    ids = await add_dead_letters(runtime, [identify(1), identify(2)], status_code=None)
    settings = ConnectorSettings(write_key=segment_api.write_key, segment_api_host=segment_api.url)
    segment_api.fail(403, count=1)
    assert await replay.replay(runtime.engine, settings, ids=[ids[0]]) == {"replayed": 0, "failed": 1}
    async with runtime.engine.connect() as conn:
        letters = {row.id: row for row in await conn.execute(sa.select(dead_letters))}
    assert letters[ids[0]].status_code == 403 and letters[ids[0]].reason.startswith("HTTP 403")
    assert letters[ids[1]].status_code is None and letters[ids[1]].reason == "set aside by the test"


async def test_replay_without_a_write_key_is_refused_and_says_why(runtime):
    with pytest.raises(ValueError, match=r"^no write_key in settings: nothing can be sent$"):
        await replay.replay(runtime.engine, ConnectorSettings(write_key=""))


def log_lines(output: list[str], event: str) -> list[dict[str, Any]]:
    return [
        line
        for line in map(json.loads, filter(lambda text: text.startswith("{"), output))
        if line.get("event") == event
    ]


async def test_a_replay_logs_each_refused_batch_with_segment_s_answer_and_its_totals(
    runtime, segment_api, env, monkeypatch
):
    await configure(runtime, segment_api)
    await add_dead_letters(runtime, [identify(1)])
    segment_api.fail(403, count=1)

    refused = await replay_from_the_command_line(env, monkeypatch)
    [error] = log_lines(refused, "outgoing.replay.error")
    assert (error["level"], error["status"], error["count"]) == ("warning", 403, 1)
    assert error["reason"].startswith("HTTP 403")
    [done] = log_lines(refused, "outgoing.replay.done")
    assert (done["level"], done["replayed"], done["failed"]) == ("info", 0, 1)
    assert "0 dead letters delivered, 1 failed" in refused

    delivered = await replay_from_the_command_line(env, monkeypatch)
    assert log_lines(delivered, "outgoing.replay.error") == []
    [done] = log_lines(delivered, "outgoing.replay.done")
    assert (done["replayed"], done["failed"]) == (1, 0)


def letter_of_wire_size(n: int, size: int) -> dict[str, Any]:
    """An identify whose JSON, as the transport writes it, is exactly `size` bytes."""
    message = identify(n)
    message["traits"]["padding"] = "p" * (size - len(json.dumps(message).encode()))
    assert len(json.dumps(message).encode()) == size
    return message


async def test_a_replayed_batch_stays_within_475000_bytes_on_the_wire_with_a_long_write_key(runtime):
    # The body is {"batch": [...], "sentAt": ..., "writeKey": ...}: with a 256-character write
    # key, 16 letters that fill 475,000 bytes without it are over 475,000 bytes with it.
    write_key = "k" * 256
    sent_at = "2026-11-30T12:00:00.000000+00:00"  # as long as the transport's sentAt ever is
    envelope = len(json.dumps({"batch": [], "sentAt": sent_at, "writeKey": write_key}).encode())
    letter_bytes = (475_000 - envelope - 15 * len(", ")) // 16 - 5  # 16 letters: 80 bytes under the limit
    with FakeSegment(write_key=write_key) as segment_api:
        await add_dead_letters(
            runtime,
            [letter_of_wire_size(n, letter_bytes) for n in range(15)] + [letter_of_wire_size(15, letter_bytes + 180)],
        )  # ... and this one 100 over
        settings = ConnectorSettings(write_key=write_key, segment_api_host=segment_api.url)
        assert await replay.replay(runtime.engine, settings) == {"replayed": 16, "failed": 0}
    assert len(segment_api.body_sizes) == 2
    assert max(segment_api.body_sizes) <= 475_000
    assert sorted(segment_api.message_ids()) == sorted(f"replay-{n}" for n in range(16))


def sample(name, **labels):
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def queue_identifies(client, runtime, segment_api, *user_ids, traits=()):
    """An identify for each user, queued to be sent; each trait of `traits` comes in its own call."""
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=[k for k, _ in traits])
    for user_id in user_ids:
        for call in [{}] + [{key: value} for key, value in traits]:
            response = await client.post("/v1/identify", headers=basic_auth(), json={"userId": user_id, "traits": call})
            assert response.status_code == 200, response.text
    await drain(runtime)


async def test_the_outbox_depth_is_counted_and_exported(client, runtime, segment_api):
    await queue_identifies(client, runtime, segment_api, "u-1", "u-2", "u-3")
    assert await outbox.depth(runtime.engine) == 3
    assert sample("connector_outbox_depth") == 3.0


async def test_delivered_messages_are_counted_by_type_and_sent_with_the_time_they_left(client, runtime, segment_api):
    before = sample("connector_delivered_total", type="identify")
    latency_count, latency_sum = sample("connector_delivery_seconds_count"), sample("connector_delivery_seconds_sum")
    await queue_identifies(client, runtime, segment_api, "u-1", "u-2")
    started = utcnow()
    await sender.Sender(runtime).send_once()
    assert sample("connector_delivered_total", type="identify") - before == 2.0
    [body] = segment_api.bodies
    sent_at = datetime.fromisoformat(body["sentAt"])
    assert started - timedelta(seconds=1) <= sent_at <= utcnow() + timedelta(seconds=1)
    assert sample("connector_delivery_seconds_count") - latency_count == 1.0
    assert 0.0 <= sample("connector_delivery_seconds_sum") - latency_sum < 30.0


async def test_dead_letters_are_counted_by_status_or_as_errors(client, runtime, segment_api):
    refused, error = (
        sample("connector_dead_lettered_total", reason="400"),
        sample("connector_dead_lettered_total", reason="error"),
    )
    await queue_identifies(client, runtime, segment_api, "u-1")
    segment_api.fail(400, count=1)
    await sender.Sender(runtime).send_once()
    assert sample("connector_dead_lettered_total", reason="400") - refused == 1.0
    # two traits of 20,000 characters: a 40 KB identify, over Segment's 32 KB, dead-lettered without a status
    await queue_identifies(client, runtime, segment_api, "u-2", traits=[("a", "x" * 20_000), ("b", "y" * 20_000)])
    await sender.Sender(runtime).send_once()
    assert sample("connector_dead_lettered_total", reason="error") - error == 1.0
    assert sample("connector_dead_lettered_total", reason="400") - refused == 1.0
