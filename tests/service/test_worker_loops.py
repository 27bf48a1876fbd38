"""The worker's loops as one worker: what its sender loops say, they say once."""

import asyncio

from connector.service import worker


async def test_a_worker_without_a_write_key_says_so_once_not_once_per_sender_loop(runtime, capfd):
    capfd.readouterr()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run_forever(runtime, stop))
    await asyncio.sleep(1.0)  # every sender loop looks at the outbox several times meanwhile
    stop.set()
    await asyncio.wait_for(running, timeout=30)

    out = capfd.readouterr().out
    assert "worker.start" in out  # the worker's lines are what was read
    assert out.count("no write_key in settings; outbox rows stay queued") == 1
