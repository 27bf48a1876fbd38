"""SIGTERM, as Heroku sends it (to every process of the dyno, then SIGKILL 30 s later), on real
`connector serve --no-worker` and `connector worker` processes under load from concurrent clients
posting /v1/batch over HTTP: each process exits in time, no outbox row stays claimed, and every
message that got a 200 is processed afterwards by a fresh worker and reaches Segment.
"""

import threading
import time
from typing import Any, Self

import httpx
import sqlalchemy as sa

from connector.core.models import JournalEntry, OutboxItem, utcnow
from tests.support.app import basic_auth, free_port, wait_until
from tests.support.database import journal_statuses
from tests.support.fake_segment import configure
from tests.support.processes import HEROKU_GRACE_SECONDS, Process, process_env, wait_for_http

CLIENTS = 4
journal = JournalEntry.__table__
outbox = OutboxItem.__table__


class Load:
    """Clients posting /v1/batch in a loop; what got a 200 is acknowledged, a refused connection is not."""

    def __init__(self, url: str):
        self.url = url
        self.acknowledged: list[dict[str, Any]] = []
        self.other_answers: list[int] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=30)

    def _client(self, client: int) -> None:
        with httpx.Client(base_url=self.url, headers=basic_auth(), timeout=30) as http:
            for n in range(1_000_000):
                if self.stopping.is_set():
                    return
                user = f"c{client}-u{n}"
                batch: list[dict[str, Any]] = [
                    {
                        "type": "identify",
                        "userId": user,
                        "messageId": f"{user}-identify",
                        "traits": {"email": f"{user}@example.com"},
                    },
                    *(
                        {"type": "track", "userId": user, "event": "Clicked", "messageId": f"{user}-track-{k}"}
                        for k in range(20)
                    ),
                ]
                try:
                    answer = http.post("/v1/batch", json={"batch": batch})
                except httpx.TransportError:  # the web process is gone or going: nothing was acknowledged
                    time.sleep(0.05)
                    continue
                with self._lock:
                    if answer.status_code == 200:
                        self.acknowledged += batch
                    else:
                        self.other_answers.append(answer.status_code)

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)


async def claimed_rows(runtime: Any) -> list[Any]:
    async with runtime.engine.connect() as conn:
        return (
            await conn.execute(
                sa.select(outbox.c.id, outbox.c.key).where(
                    outbox.c.claimed_until.is_not(None), outbox.c.claimed_until > utcnow()
                )
            )
        ).all()


async def drained(runtime: Any) -> bool:
    async with runtime.engine.connect() as conn:
        pending = await conn.scalar(sa.text("SELECT count(*) FROM journal_queue"))
        queued = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    return pending == 0 and queued == 0


async def statuses(runtime: Any) -> dict[str, str]:
    return {row.message_id: row.status for row in await journal_statuses(runtime.engine)}


async def test_sigterm_under_load_loses_no_acknowledged_message(runtime, segment_api, database_url, tmp_path):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"])
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = process_env(database_url)
    # Two web processes in the dyno, as the Python buildpack sets WEB_CONCURRENCY on a 512 MB dyno.
    web = Process(["serve", "--no-worker", "--port", str(port)], {**env, "WEB_CONCURRENCY": "2"}, tmp_path / "web.log")
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        wait_for_http(url, web)
        with Load(url) as load:
            await wait_until(lambda: load.count() > 2_000 and segment_api.requests > 0, timeout=60)
            worker_seconds = worker.terminate()
            assert worker.popen.returncode == 0, worker.output()[-3000:]
            assert await claimed_rows(runtime) == []  # released or acknowledged: a new worker starts at once
            after_worker = load.count()
            await wait_until(lambda: load.count() > after_worker + 500, timeout=30)  # the web goes on alone
            web_seconds = web.terminate()
            assert web.output().count('"web.stop"') == 2, web.output()[-3000:]
        assert worker_seconds < HEROKU_GRACE_SECONDS and web_seconds < HEROKU_GRACE_SECONDS
        assert load.other_answers == []  # a request is answered 200, or refused before it is read

        fresh = Process(["worker"], env, tmp_path / "fresh-worker.log")
        try:
            await wait_until(lambda: drained(runtime), timeout=120, interval=0.5)
        finally:
            assert fresh.terminate() < HEROKU_GRACE_SECONDS
    finally:
        for process in (web, worker):
            process.kill()

    stored = await statuses(runtime)
    assert {message["messageId"]: stored.get(message["messageId"]) for message in load.acknowledged} == {
        message["messageId"]: "processed" for message in load.acknowledged
    }
    identified = {message["userId"] for message in load.acknowledged if message["type"] == "identify"}
    sent = {message["userId"] for message in segment_api.messages if message["type"] == "identify"}
    assert identified <= sent


async def test_a_worker_stopped_while_segment_stalls_releases_its_claims_and_exits_in_time(
    runtime, segment_api, database_url, tmp_path
):
    await configure(runtime, segment_api, synchronized_segments=["ALL"])
    port = free_port()
    env = process_env(database_url)
    web = Process(["serve", "--no-worker", "--port", str(port)], env, tmp_path / "web.log")
    try:
        wait_for_http(f"http://127.0.0.1:{port}", web)
        users = [f"stalled-{n}" for n in range(50)]
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(
                f"http://127.0.0.1:{port}/v1/batch",
                headers=basic_auth(),
                json={"batch": [{"type": "identify", "userId": user, "traits": {"plan": "pro"}} for user in users]},
            )
        assert answer.status_code == 200
    finally:
        web.terminate()
    segment_api.stall(seconds=25, count=1_000)  # longer than the worker's grace, shorter than the test
    worker = Process(["worker"], env, tmp_path / "worker.log")
    try:
        await wait_until(lambda: segment_api.requests > 0, timeout=60)  # a send is on the wire, rows claimed
        assert await claimed_rows(runtime) != []
        seconds = worker.terminate()
    finally:
        worker.kill()
    assert worker.popen.returncode == 0, worker.output()[-3000:]
    assert seconds < HEROKU_GRACE_SECONDS
    assert await claimed_rows(runtime) == []
    assert '"outgoing.release"' in worker.output()

    segment_api.heal()
    fresh = Process(["worker"], env, tmp_path / "fresh-worker.log")
    try:
        await wait_until(lambda: drained(runtime), timeout=60, interval=0.5)
    finally:
        fresh.terminate()
    assert set(users) <= {message["userId"] for message in segment_api.messages if message["type"] == "identify"}
