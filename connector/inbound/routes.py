"""POST /segment (Webhooks destination) and the Segment-compatible POST /v1/* endpoints.

Each request: authenticate, read within the limits, parse, validate, drop our own
echoes, append to the journal, and answer 200 only once the append has committed.
/v1 also takes analytics.js's short paths (/v1/t, /p, /i, /g, /s, /a and the batch /v1/b), its
text/plain bodies (sendBeacon, keepalive: the body is parsed as JSON whatever its Content-Type) and
browser write keys (auth.v1_sender); a `delete` is refused there: deletions come from Segment, on /segment.
"""

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from time import perf_counter
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.core import spec
from connector.core.logs import get_logger
from connector.core.metrics import MESSAGES_IN, REQUEST_LATENCY
from connector.core.models import utcnow
from connector.core.runtime import Runtime
from connector.core.settings import ConnectorSettings
from connector.flow import round_trips
from connector.inbound.auth import basic_auth_user, require_key, require_signature, v1_sender
from connector.inbound.body import read_body
from connector.inbound.errors import InboundError, InboundResponse, error_body
from connector.inbound.writer import API, SEGMENT, Journal, JournalUnavailable, journal_row

MAX_V1_BATCH_BYTES = 500 * 1024
SHORT_PATHS = {"t": "track", "p": "page", "i": "identify", "g": "group", "s": "screen", "a": "alias"}  # analytics.js
log = get_logger()


def is_own_echo(message: dict[str, Any], settings: ConnectorSettings) -> bool:
    """The inbound half of loop protection: our own outbound calls coming back."""
    integrations = message.get("integrations") or {}
    if integrations.get(settings.integration_name) is False:
        return True
    integration = (message.get("context") or {}).get("integration")
    return isinstance(integration, dict) and integration.get("name") == settings.connector_name


STORAGE_ERRORS = (JournalUnavailable, DBAPIError, OperationalError, OSError, asyncio.TimeoutError)
Endpoint = Callable[[Request], Awaitable[Response]]


def inbound_endpoint(label: str) -> Callable[[Endpoint], Endpoint]:
    """Answer InboundError with its JSON, any storage failure with 503 (Segment retries), and time it."""

    def decorate(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def handle(request: Request) -> Response:
            started = perf_counter()
            try:
                return await endpoint(request)
            except InboundError as error:
                return error.response()
            except STORAGE_ERRORS as error:
                log.error("incoming.storage.error", endpoint=label, error=type(error).__name__)
                return InboundError(503, "storage is unavailable; retry later").response()
            finally:
                REQUEST_LATENCY.labels(label).observe(perf_counter() - started)

        return handle

    return decorate


@inbound_endpoint("segment")
async def segment_webhook(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    journal: Journal = request.app.state.journal
    require_key(basic_auth_user(request), await runtime.settings.api_key())
    raw = await read_body(request, runtime.env.max_body_bytes, runtime.env.max_decompressed_bytes)
    document = _parse(raw, runtime)
    settings = await runtime.settings.current()
    if settings.shared_secret:
        require_signature(request, raw, document, settings.shared_secret)
    if round_trips.is_round_trip(document):  # the connector's own test, back from Segment: never journaled
        await round_trips.arrived(runtime.engine, document)
        return JSONResponse({"success": True, "accepted": 0, "skipped": 1})
    # A `delete` (Segment forwarding a user deletion) is journaled like any message: the processor
    # applies it in journal order, so it erases what came before it even if not yet processed.
    if isinstance(document, list):
        return await _accept_many(
            journal, settings, document, default_type=None, sent_at=None, source=SEGMENT, types=spec.SEGMENT_TYPES
        )
    message = _normalise_one(document, default_type=None, sent_at=None, source=SEGMENT, types=spec.SEGMENT_TYPES)
    return await _accept(journal, settings, [message], rejected=[], source=SEGMENT, write_key_id=None)


@inbound_endpoint("v1")
async def v1_single(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    journal: Journal = request.app.state.journal
    path = request.path_params["message_type"]
    message_type = SHORT_PATHS.get(path, path)
    if message_type not in spec.MESSAGE_TYPES:  # 501 is for a message's type, on /segment
        raise InboundError(
            404,
            f"no endpoint /v1/{path}; the message types are {', '.join(spec.MESSAGE_TYPES)}, and batch",
        )
    basic = basic_auth_user(request)  # a wrong Basic key is refused before the body is read
    write_key_id = await v1_sender(request, runtime, basic) if basic is not None else None
    raw = await read_body(request, runtime.env.max_body_bytes, runtime.env.max_decompressed_bytes)
    document = _parse(raw, runtime)
    if not isinstance(document, dict):
        raise InboundError(400, "body must be a JSON object", field="body")
    if basic is None:
        write_key_id = await v1_sender(request, runtime, _write_key(document))
    settings = await runtime.settings.current()
    message = _normalise_one(document, default_type=message_type, sent_at=None, source=API)
    return await _accept(journal, settings, [message], rejected=[], source=API, write_key_id=write_key_id)


@inbound_endpoint("v1_batch")
async def v1_batch(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    journal: Journal = request.app.state.journal
    basic = basic_auth_user(request)
    write_key_id = await v1_sender(request, runtime, basic) if basic is not None else None
    raw = await read_body(request, MAX_V1_BATCH_BYTES, runtime.env.max_decompressed_bytes)
    if len(raw) > MAX_V1_BATCH_BYTES:
        raise InboundError(
            413, f"batch body exceeds the limit of {MAX_V1_BATCH_BYTES} bytes (500 KB)", limit=MAX_V1_BATCH_BYTES
        )
    document = _parse(raw, runtime)
    if not isinstance(document, dict):
        raise InboundError(400, 'body must be a JSON object {"batch": [...]}', field="body")
    if basic is None:
        write_key_id = await v1_sender(request, runtime, _write_key(document))
    batch = document.get("batch")
    if not isinstance(batch, list):
        raise InboundError(400, "batch is required and must be an array", field="batch")
    settings = await runtime.settings.current()
    shared = {key: document[key] for key in ("context", "integrations") if isinstance(document.get(key), dict)}
    merged = [_with_batch_defaults(item, shared) for item in batch]
    return await _accept_many(
        journal,
        settings,
        merged,
        default_type=None,
        sent_at=document.get("sentAt"),
        source=API,
        write_key_id=write_key_id,
    )


def _parse(raw: bytes, runtime: Runtime) -> Any:
    try:
        return spec.parse_json(raw, runtime.env.max_json_depth)
    except spec.SpecError as error:
        raise InboundError(error.status, error.message, field=error.field) from None


def _write_key(document: dict[str, Any]) -> str | None:
    key = document.get("writeKey", document.get("write_key"))
    return key if isinstance(key, str) else None


def _with_batch_defaults(item: Any, shared: dict[str, dict[str, Any]]) -> Any:
    """Batch-level context and integrations apply to each message; the message's own keys win."""
    if not isinstance(item, dict) or not shared:
        return item
    merged = dict(item)
    for key, defaults in shared.items():
        own = merged.get(key)
        merged[key] = {**defaults, **own} if isinstance(own, dict) else dict(defaults)
    return merged


def _normalise_one(
    document: Any, default_type: str | None, sent_at: Any, source: str, types: tuple[str, ...] = spec.MESSAGE_TYPES
) -> dict[str, Any]:
    try:
        return _normalise(document, utcnow(), default_type, sent_at, source, types)
    except spec.SpecError as error:
        MESSAGES_IN.labels(_type_label(document), "rejected").inc()
        raise InboundError(error.status, error.message, field=error.field) from None


def _normalise(
    document: Any, received_at: datetime, default_type: str | None, sent_at: Any, source: str, types: tuple[str, ...]
) -> dict[str, Any]:
    """spec.normalise_message, and on /v1 no `delete`: a write key is public, and deletions come from Segment."""
    if source == API and isinstance(document, dict) and document.get("type") == "delete":
        raise spec.SpecError("type", "a delete is refused on /v1: deletions come from Segment, on /segment")
    return spec.normalise_message(document, received_at, default_type, sent_at, types)


async def _accept_many(
    journal: Journal,
    settings: ConnectorSettings,
    documents: list[Any],
    default_type: str | None,
    sent_at: Any,
    source: str,
    types: tuple[str, ...] = spec.MESSAGE_TYPES,
    write_key_id: int | None = None,
) -> JSONResponse:
    if not documents:
        raise InboundError(400, "the batch is empty", field="batch")
    if len(documents) > spec.MAX_BATCH_MESSAGES:
        raise InboundError(
            400,
            f"batch has {len(documents)} messages; the limit is {spec.MAX_BATCH_MESSAGES}",
            field="batch",
            limit=spec.MAX_BATCH_MESSAGES,
        )
    received_at = utcnow()
    messages, rejected = [], []
    for index, document in enumerate(documents):
        try:
            messages.append(_normalise(document, received_at, default_type, sent_at, source, types))
        except spec.SpecError as error:
            MESSAGES_IN.labels(_type_label(document), "rejected").inc()
            rejected.append({"index": index, "status": error.status, **error.as_dict()})
    if not messages:
        return InboundResponse(
            error_body(400, "every message in the batch was rejected", rejected=rejected), status_code=400
        )
    return await _accept(journal, settings, messages, rejected, source, write_key_id)


async def _accept(
    journal: Journal,
    settings: ConnectorSettings,
    messages: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
    source: str,
    write_key_id: int | None,
) -> JSONResponse:
    kept = []
    for message in messages:
        if is_own_echo(message, settings):
            MESSAGES_IN.labels(message["type"], "skipped").inc()
            log.info("incoming.message.skip", reason="loop", type=message["type"], message_id=message["messageId"])
        else:
            kept.append(message)
    # Every row names its sender's write key (None but on /v1 from a browser): one commit holds rows of all kinds.
    await journal.append(
        [{**journal_row(message, _received(message), source), "write_key_id": write_key_id} for message in kept]
    )
    for message_type, count in Counter(message["type"] for message in kept).items():
        MESSAGES_IN.labels(message_type, "accepted").inc(count)
    body: dict[str, Any] = {"success": True, "accepted": len(kept), "skipped": len(messages) - len(kept)}
    if rejected:
        body["rejected"] = rejected
    return InboundResponse(body)


def _received(message: dict[str, Any]) -> datetime:
    return spec.parse_timestamp(message["receivedAt"], "receivedAt")


def _type_label(document: Any) -> str:
    value = document.get("type") if isinstance(document, dict) else None
    return value if value in spec.SEGMENT_TYPES else "unknown"


routes = [
    Route("/segment", segment_webhook, methods=["POST"]),
    Route("/v1/batch", v1_batch, methods=["POST"]),
    Route("/v1/import", v1_batch, methods=["POST"]),
    Route("/v1/b", v1_batch, methods=["POST"]),  # analytics.js's batching strategy
    Route("/v1/{message_type:str}", v1_single, methods=["POST"]),
]
