"""The ceiling for POST /segment: the least a durable, deduplicated accept can do on this machine.

A minimal starlette app on the same uvicorn as the connector, with a table of its own: each request's
message is parsed and committed before the answer, and the requests in flight are group committed as ONE
`INSERT … SELECT FROM unnest(…) ON CONFLICT (message_id) DO NOTHING` in autocommit on one held asyncpg
connection. No authentication, no validation, no metrics: what is left is the physical cost.

    .venv/bin/python benchmarks/durable_accept.py --dsn postgresql://... --port 8100

Run by benchmarks/accept.py; not part of the connector.
"""

import argparse
import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

TABLE = "bench_durable_accept"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (id bigserial PRIMARY KEY, message_id text NOT NULL UNIQUE, "
    "type text NOT NULL, payload jsonb NOT NULL, received_at timestamptz NOT NULL)"
)
INSERT = (
    f"INSERT INTO {TABLE} (message_id, type, payload, received_at) "
    "SELECT m, t, p::jsonb, r FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) AS x (m, t, p, r) "
    "ON CONFLICT (message_id) DO NOTHING"
)
OK = b'{"success":true}'


class GroupCommit:
    def __init__(self, dsn: str):
        self.dsn = dsn
        self.connection: asyncpg.Connection | None = None
        self.waiting: list[tuple[tuple[str, str, str, datetime], asyncio.Future[None]]] = []
        self.flusher: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.connection = await asyncpg.connect(self.dsn)
        await self.connection.execute(CREATE)

    async def append(self, row: tuple[str, str, str, datetime]) -> None:
        done = asyncio.get_running_loop().create_future()
        self.waiting.append((row, done))
        if self.flusher is None or self.flusher.done():
            self.flusher = asyncio.create_task(self.flush())
        await done

    async def flush(self) -> None:
        assert self.connection is not None
        while self.waiting:
            taken, self.waiting = self.waiting, []
            rows = [row for row, _ in taken]
            try:
                await self.connection.execute(INSERT, *(list(column) for column in zip(*rows, strict=True)))
            except Exception as error:
                for _, done in taken:
                    done.set_exception(error)
            else:
                for _, done in taken:
                    done.set_result(None)


def create_app(dsn: str) -> Starlette:
    journal = GroupCommit(dsn)

    async def accept(request: Request) -> Response:
        message: Any = orjson.loads(await request.body())
        if not isinstance(message, dict) or not isinstance(message.get("messageId"), str):
            return Response(b'{"success":false}', status_code=400, media_type="application/json")
        payload = orjson.dumps(message).decode()
        await journal.append((message["messageId"], str(message.get("type")), payload, datetime.now(UTC)))
        return Response(OK, media_type="application/json")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await journal.start()
        yield

    return Starlette(routes=[Route("/segment", accept, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.dsn), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
