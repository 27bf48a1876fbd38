"""A send round that is cancelled (a worker told to stop, past its grace) gives its claims back at
once, but never a claim another sender took after this one's lease ran out."""

import asyncio

import sqlalchemy as sa

from connector.core.models import OutboxItem, utcnow
from connector.flow import outbox as outbox_module
from connector.outbound import sender
from tests.support.app import basic_auth, drain, wait_until
from tests.support.fake_segment import configure

outbox = OutboxItem.__table__


async def queue_users(client, runtime, count: int) -> None:
    response = await client.post(
        "/v1/batch",
        headers=basic_auth(),
        json={"batch": [{"type": "identify", "userId": f"u-{n}", "traits": {"plan": "pro"}} for n in range(count)]},
    )
    assert response.status_code == 200
    await drain(runtime)


async def claimed(runtime) -> int:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(
            sa.select(sa.func.count())
            .select_from(outbox)
            .where(outbox.c.claimed_until.is_not(None), outbox.c.claimed_until > utcnow())
        )


async def test_a_send_round_cancelled_while_segment_stalls_releases_its_claims(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await queue_users(client, runtime, 5)
    segment_api.stall(seconds=3, count=1)
    round_task = asyncio.create_task(sender.Sender(runtime, timeout=5).send_once())
    await wait_until(lambda: segment_api.requests > 0)
    assert await claimed(runtime) == 5
    round_task.cancel()
    await asyncio.gather(round_task, return_exceptions=True)
    assert await claimed(runtime) == 0
    async with runtime.engine.connect() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) == 5  # still to send


async def test_a_late_release_leaves_the_claims_another_sender_took_since(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    await queue_users(client, runtime, 3)
    async with runtime.engine.connect() as conn:
        first = await outbox_module.claim(conn, 10, lease=0.05)
        await asyncio.sleep(0.1)  # the first lease runs out
        second = await outbox_module.claim(conn, 10)
    assert sorted(row.id for row in first) == sorted(row.id for row in second)
    await outbox_module.release(runtime.engine, first)
    assert await claimed(runtime) == 3
    await outbox_module.release(runtime.engine, second)
    assert await claimed(runtime) == 0
