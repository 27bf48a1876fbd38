"""A fake Segment tracking API on a real localhost socket, speaking POST /v1/batch.

It checks Basic auth with the write key, accepts gzip, enforces Segment's published
limits (a request body over 500 KB, a message over 32 KB or more than 2,500 messages
is refused with 400, as Segment does), records every body's size and every accepted
body, and can be told to fail: answer a status (500, 429 with Retry-After, 400, ...) or
stall past the client's timeout, for the next N requests or for a seeded fraction of
them. With `echo_to`, it posts every message it accepted back to a connector's
POST /segment, as a workspace where the connector is both source and destination. With `deliver_through`, it
acts as the workspace a fake Public API describes (tests/support/fake_public_api.py): each accepted message goes,
one request per message as Segment's Webhooks destination sends them, to every enabled Webhooks destination on
the source whose write key was used, with that destination's headers, unless the message's `integrations`
turn Webhooks off.
"""

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.kinds import OutboxKind
from connector.core.models import Segment, SegmentMembership, SegmentTransition, UserIdentifier, utcnow
from connector.flow import outbox
from connector.outbound.sender import Sender
from connector.service.use_cases import save_settings
from tests.support.api import post_batch_accepted
from tests.support.app import ServerThread, drain


@dataclass
class Fault:
    status: int | None = None  # None: stall
    count: int | None = None  # the next N requests; None: a fraction of them
    fraction: float = 0.0
    retry_after: int | None = None
    stall_seconds: float = 0.0


# Segment's tracking API limits, as its documentation publishes them.
MAX_REQUEST_BYTES = 500_000
MAX_MESSAGE_BYTES = 32_768
MAX_BATCH_MESSAGES = 2_500


class FakeSegment(ServerThread):
    def __init__(self, write_key: str = "test-write-key", seed: int = 0):
        self.write_key = write_key
        self.bodies: list[dict[str, Any]] = []
        self.body_sizes: list[int] = []  # bytes of every request body, accepted or not
        self.message_sizes: list[int] = []  # bytes of every message of every request, as it stood in the body
        self.raw_requests: list[tuple[dict[str, str], bytes]] = []  # headers and body of each request, as sent
        self.arrivals: dict[str, float] = {}  # messageId -> time.time() of its first delivery
        self.requests = 0
        self.refused = 0
        self.fault: Fault | None = None
        self.echo: tuple[str, dict[str, str]] | None = None
        self.echo_posts = 0
        self.echo_answers: list[tuple[int, int, dict[str, Any]]] = []  # (status, messages posted, answer body)
        self.workspace: Any = None  # a FakePublicApi: deliver as its Webhooks destinations say
        self.deliveries: list[tuple[int, dict[str, Any]]] = []  # (status /segment answered, message delivered)
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        super().__init__(Starlette(routes=[Route("/v1/batch", self._batch, methods=["POST"])]), name="fake Segment")

    # --- control ----------------------------------------------------------

    def fail(self, status: int, count: int, retry_after: int | None = None) -> None:
        self.fault = Fault(status=status, count=count, retry_after=retry_after)

    def fail_fraction(self, status: int, fraction: float, retry_after: int | None = None) -> None:
        self.fault = Fault(status=status, fraction=fraction, retry_after=retry_after)

    def stall(self, seconds: float, count: int) -> None:
        self.fault = Fault(status=None, count=count, stall_seconds=seconds)

    def heal(self) -> None:
        self.fault = None

    def echo_to(self, url: str, headers: dict[str, str]) -> None:
        self.echo = (url, headers)

    def deliver_through(self, workspace: Any) -> None:
        self.workspace = workspace

    # --- what it received -------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        return [message for body in list(self.bodies) for message in body["batch"]]

    def message_ids(self) -> list[str]:
        return [message["messageId"] for message in self.messages]

    # --- the endpoint -----------------------------------------------------

    async def _batch(self, request: Request) -> JSONResponse:
        self.requests += 1
        if request.headers.get("authorization") != "Basic " + base64.b64encode(f"{self.write_key}:".encode()).decode():
            self.refused += 1
            return JSONResponse({"code": "unauthorized", "message": "bad write key"}, status_code=401)
        raw = await request.body()
        self.raw_requests.append((dict(request.headers), raw))
        if request.headers.get("content-encoding") == "gzip":
            raw = gzip.decompress(raw)
        self.body_sizes.append(len(raw))
        if len(raw) > MAX_REQUEST_BYTES:
            return JSONResponse({"code": "invalid", "message": "request body over 500KB"}, status_code=400)
        body = orjson.loads(raw)
        if not isinstance(body.get("batch"), list) or "sentAt" not in body:
            return JSONResponse({"code": "invalid", "message": "batch and sentAt are required"}, status_code=400)
        if len(body["batch"]) > MAX_BATCH_MESSAGES:
            return JSONResponse({"code": "invalid", "message": "more than 2500 messages"}, status_code=400)
        # The message's own bytes as it stood in the body: the transport writes json.dumps's default form.
        sizes = [len(json.dumps(message).encode()) for message in body["batch"]]
        self.message_sizes += sizes
        if max(sizes, default=0) > MAX_MESSAGE_BYTES:
            return JSONResponse({"code": "invalid", "message": "message over 32KB"}, status_code=400)
        fault = self._next_fault()
        if fault is not None and fault.status is None:
            await asyncio.sleep(fault.stall_seconds)
        elif fault is not None and fault.status is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            return JSONResponse(
                {"code": "fault", "message": f"injected {fault.status}"}, status_code=fault.status, headers=headers
            )
        now = time.time()
        with self._lock:
            self.bodies.append(body)
            for message in body["batch"]:
                self.arrivals.setdefault(message.get("messageId"), now)
        task = BackgroundTask(self._echo, body["batch"]) if self.echo else None
        if self.workspace is not None:
            task = BackgroundTask(self._deliver, body["batch"])
        return JSONResponse({"success": True}, background=task)

    def _next_fault(self) -> Fault | None:
        with self._lock:
            fault = self.fault
            if fault is None:
                return None
            if fault.count is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self.fault = None
                return fault
            return fault if self._random.random() < fault.fraction else None

    async def _echo(self, batch: list[dict[str, Any]]) -> None:
        assert self.echo is not None
        url, headers = self.echo
        async with httpx.AsyncClient(timeout=10) as http:
            answer = await http.post(url, headers=headers, json=batch)
        self.echo_answers.append((answer.status_code, len(batch), answer.json()))
        self.echo_posts += 1

    async def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """What Segment does with a source's messages: each to the source's enabled Webhooks destinations, signed
        (X-Signature: hex HMAC-SHA1 of the body) when the destination has a shared secret."""
        source = next(s for s in self.workspace.sources.values() if self.write_key in s["writeKeys"])
        hooks = [
            (hook, destination["settings"].get("sharedSecret") or "")
            for destination in self.workspace.on_source(source["id"])
            if destination["enabled"] and destination["metadata"]["name"] == "Webhooks"
            for hook in destination["settings"].get("hooks", [])
        ]
        async with httpx.AsyncClient(timeout=10) as http:
            for message in batch:
                integrations = message.get("integrations") or {}
                if integrations.get("Webhooks") is False or (
                    integrations.get("All") is False and "Webhooks" not in integrations
                ):
                    continue
                body = json.dumps(message).encode()
                for hook, secret in hooks:
                    headers = {header["key"]: header["value"] for header in hook.get("headers", [])}
                    headers["Content-Type"] = "application/json"
                    if secret:
                        headers["X-Signature"] = hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()
                    answer = await http.post(hook["hook"], headers=headers, content=body)
                    self.deliveries.append((answer.status_code, message))


# --- shared by the outbound tests ------------------------------------------------


def of_type(messages: list[dict[str, Any]], kind: str, event: str | None = None) -> list[dict[str, Any]]:
    """The messages of one type (and, for a track, one event name), in the order received."""
    return [
        message for message in messages if message["type"] == kind and (event is None or message.get("event") == event)
    ]


@pytest.fixture
def segment_api() -> Iterator[FakeSegment]:
    with FakeSegment() as fake:
        yield fake


async def configure(runtime: Any, fake: FakeSegment, **settings: Any) -> None:
    """Settings saved as the admin API saves them (what a save carries out with it included), sending to `fake`."""
    await save_settings(
        runtime.engine, runtime.settings, {"write_key": fake.write_key, "segment_api_host": fake.url, **settings}
    )


async def sent_after(client: Any, runtime: Any, fake: "FakeSegment", *messages: dict[str, Any]) -> list[Any]:
    """Post the messages (if any), process them, run the sender; return what reached Segment this time."""
    before = len(fake.messages)
    if messages:
        await post_batch_accepted(client, *messages)
    await drain(runtime)
    await send_all(runtime)
    return fake.messages[before:]


async def send_all(runtime: Any, rounds: int = 50, **options: Any) -> list[Any]:
    """Run the sender until a round claims nothing (rows in backoff wait for a later round)."""
    sender = Sender(runtime, **options)
    results = []
    for _ in range(rounds):
        result = await sender.send_once()
        results.append(result)
        if not result.claimed:
            break
    return results


async def add_segment(runtime: Any, name: str, members: list[int], entity: str = "user") -> int:
    """A segment and its members, written straight to the tables (the segments code is not needed)."""
    async with runtime.engine.begin() as conn:
        segment_id: int = (
            await conn.execute(
                sa.insert(Segment.__table__)
                .values(name=name, entity=entity, rule={}, created_at=utcnow(), updated_at=utcnow())
                .returning(Segment.__table__.c.id)
            )
        ).scalar_one()
        if members:
            await conn.execute(
                sa.insert(SegmentMembership.__table__),
                [{"segment_id": segment_id, "entity_id": member, "entered_at": utcnow()} for member in members],
            )
    return segment_id


async def add_transition(runtime: Any, segment_id: int, user_id: int, transition: str, initial: bool = False) -> int:
    segments = Segment.__table__
    async with runtime.engine.begin() as conn:
        segment = (
            await conn.execute(sa.select(segments.c.name, segments.c.entity).where(segments.c.id == segment_id))
        ).one()
        transition_id: int = (
            await conn.execute(
                sa.insert(SegmentTransition.__table__)
                .values(
                    segment_id=segment_id,
                    segment_name=segment.name,
                    entity=segment.entity,
                    entity_id=user_id,
                    transition=transition,
                    initial=initial,
                    at=utcnow(),
                )
                .returning(SegmentTransition.__table__.c.id)
            )
        ).scalar_one()
        await outbox.enqueue(conn, OutboxKind.TRANSITION, [transition_id])
    return transition_id


async def user_id_of(runtime: Any, user_id: str) -> int:
    async with runtime.engine.connect() as conn:
        found: int = (
            await conn.execute(
                sa.select(UserIdentifier.__table__.c.user_id).where(
                    UserIdentifier.__table__.c.kind == "user_id", UserIdentifier.__table__.c.value == user_id
                )
            )
        ).scalar_one()
    return found
