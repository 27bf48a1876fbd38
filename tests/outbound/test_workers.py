"""Several `connector worker` processes on PostgreSQL never send the same message twice."""

import asyncio
import os
import subprocess
import sys
from collections import Counter

import pytest
import sqlalchemy as sa

from connector.core.models import OutboxItem
from tests.support.app import API_KEY, basic_auth, drain, wait_until
from tests.support.fake_segment import configure

USERS, EVENTS = 300, 900


@pytest.mark.postgres_only
async def test_two_worker_processes_share_the_outbox(client, runtime, segment_api, env):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"], forward_events=True)
    for start in range(0, EVENTS, 300):
        response = await client.post(
            "/v1/batch",
            headers=basic_auth(),
            json={
                "batch": [
                    {"type": "track", "userId": f"u-{n % USERS}", "event": "Clicked", "messageId": f"e-{n}"}
                    for n in range(start, start + 300)
                ]
            },
        )
        assert response.status_code == 200
    await drain(runtime)

    process_env = {
        **os.environ,
        "DATABASE_URL": env.database_url,
        "CONNECTOR_API_KEY": API_KEY,
        "LOG_LEVEL": "WARNING",
        "OUTBOUND_CLAIM_LIMIT": "40",
    }
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "connector", "worker"],
            env=process_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    try:

        async def outbox_empty():
            async with runtime.engine.connect() as conn:
                return (await conn.execute(sa.select(sa.func.count()).select_from(OutboxItem.__table__))).scalar() == 0

        await wait_until(outbox_empty, timeout=60, interval=0.2)
        await asyncio.sleep(0.5)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            assert worker.wait(timeout=30) == 0, (worker.stderr.read() if worker.stderr else b"").decode()[-2000:]
    counts = Counter(segment_api.message_ids())
    assert [message_id for message_id, n in counts.items() if n > 1] == []
    assert len(counts) == USERS + EVENTS
    assert len(segment_api.bodies) > 2  # both processes took turns with small claims
