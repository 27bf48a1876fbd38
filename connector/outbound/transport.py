"""Segment's transport: one POST /v1/batch as segment-analytics-python makes it, what a failure is worth (retried
or not, and when), and batches cut to Segment's limits.

Each message is encoded once (`encode`), and those bytes are both what is measured and what is sent: the
body is the library's own `json.dumps(body)` (ASCII escapes for every non-ASCII character, a space after each
`,` and `:`; the keys batch, sentAt, writeKey in that order), assembled from the encoded messages, so a batch's
size is exactly the sum of its messages' lengths, their separators and the envelope around them
(tests/outbound/test_transport.py holds it byte for byte against the library's body, over real HTTP). The
request itself is the library's: its requests session, headers, Basic auth, no gzip (its default),
its APIError and Retry-After parsing.
"""

import asyncio
import base64
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from time import perf_counter
from typing import Any, TypeVar

from segment.analytics import request as segment_request
from segment.analytics.utils import remove_trailing_slash
from segment.analytics.version import VERSION as SEGMENT_LIBRARY_VERSION

from connector.core.metrics import DELIVERY_LATENCY
from connector.core.models import utcnow
from connector.core.settings import ConnectorSettings
from connector.core.spec import MAX_BATCH_MESSAGES

MAX_BATCH_BYTES = 475_000  # Segment refuses a body over 500 KB: keep a margin below it
BATCH_SEPARATOR_BYTES = len(", ")
REQUEST_TIMEOUT_SECONDS = 15.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 600.0
RETRY_FOR_SECONDS = 4 * 3600
RETRYABLE_STATUSES = frozenset({408, 410, 429, 460})
NOT_RETRYABLE_SERVER_STATUSES = frozenset({501, 505})


@dataclass
class Failure:
    reason: str
    status: int | None = None
    retry: bool = False
    retry_after: float | None = None


def classify(error: Exception) -> Failure:
    """Which failures are worth another try (Segment's own list), and how long Segment asks us to wait."""
    if isinstance(error, segment_request.APIError):
        status = int(error.status)
        retry = status in RETRYABLE_STATUSES or (500 <= status < 600 and status not in NOT_RETRYABLE_SERVER_STATUSES)
        retry_after = segment_request.parse_retry_after(error.response) if error.response is not None else None
        return Failure(f"HTTP {status}: {error.message}"[:1000], status, retry, retry_after)
    # Timeouts, refused connections and anything unforeseen: retried, since dropping would lose data.
    return Failure(f"{type(error).__name__}: {error}"[:1000], None, True)


async def post_batch(
    settings: ConnectorSettings, encoded: list[str], request_timeout: float = REQUEST_TIMEOUT_SECONDS
) -> Failure | None:
    """One POST /v1/batch of these encoded messages (`encode`); None when Segment accepted it."""
    started = perf_counter()
    try:
        await asyncio.to_thread(
            post_encoded,
            settings.write_key or "",
            settings.segment_api_host,
            encoded,
            utcnow().isoformat(),
            request_timeout,
        )
    except Exception as error:  # every failure is classified: retried or dead-lettered, never lost
        return classify(error)
    finally:
        DELIVERY_LATENCY.observe(perf_counter() - started)
    return None


def encode(message: dict[str, Any]) -> str:
    """A message as it stands in the request body. ASCII only (json.dumps escapes the rest): one byte a character."""
    return json.dumps(message, cls=segment_request.DatetimeSerializer)


def request_body(encoded: list[str], sent_at: str, write_key: str) -> str:
    """What segment_request.post sends for `batch=` these messages and `sentAt=sent_at`: json.dumps of
    {"batch": [...], "sentAt": ..., "writeKey": ...}, built around the messages already encoded."""
    return (
        '{"batch": ['
        + ", ".join(encoded)
        + '], "sentAt": '
        + json.dumps(sent_at)
        + ', "writeKey": '
        + json.dumps(write_key)
        + "}"
    )


def post_encoded(write_key: str, host: str | None, encoded: list[str], sent_at: str, timeout: float) -> None:
    """segment_request.post's request and answer, with the body from request_body: the library's session,
    headers (Content-Type, User-Agent, Basic auth of the write key), no gzip, and its APIError for any status
    but 2xx (the code and message of Segment's JSON answer, or "unknown"; a 3xx is "redirect")."""
    credentials = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "analytics-python/" + SEGMENT_LIBRARY_VERSION,
        "Authorization": f"Basic {credentials}",
    }
    url = remove_trailing_slash(host or "https://api.segment.io") + "/v1/batch"
    response = segment_request._session.post(
        url, data=request_body(encoded, sent_at, write_key), headers=headers, timeout=timeout
    )
    status = response.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise segment_request.APIError(status, "redirect", response.reason, response)
    try:
        payload = response.json()
        code, message = payload["code"], payload["message"]
    except (ValueError, KeyError, TypeError):
        raise segment_request.APIError(status, "unknown", response.text, response) from None
    raise segment_request.APIError(status, code, message, response)


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential with equal jitter (never less than half the step), at least Retry-After."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempts, 30))
    return max(step / 2 + random.uniform(0, step / 2), retry_after or 0.0)


def retry_budget_spent(failing_since: datetime, now: datetime) -> bool:
    """True once a row has been failing for RETRY_FOR_SECONDS: it is dead-lettered instead of retried."""
    return (now - failing_since).total_seconds() >= RETRY_FOR_SECONDS


def wire_size(message: dict[str, Any]) -> int:
    """The bytes a message takes in the transport's request body."""
    return len(encode(message))


def envelope_size(write_key: str | None) -> int:
    """The bytes around the messages: {"batch": [], "sentAt": ..., "writeKey": ...}, at the longest sentAt."""
    longest_sent_at = "2000-01-01T00:00:00.000000+00:00"
    return len(json.dumps({"batch": [], "sentAt": longest_sent_at, "writeKey": write_key}).encode())


Item = TypeVar("Item")


def batches(messages: Sequence[Item], size_of: Callable[[Item], int], write_key: str | None) -> list[list[Item]]:
    """Split in order into batches within Segment's limits (bytes on the wire and count)."""
    empty = envelope_size(write_key)
    result: list[list[Item]] = []
    current: list[Item] = []
    current_bytes = empty
    for item in messages:
        size = size_of(item) + (BATCH_SEPARATOR_BYTES if current else 0)
        if current and (len(current) >= MAX_BATCH_MESSAGES or current_bytes + size > MAX_BATCH_BYTES):
            result.append(current)
            current, current_bytes = [], empty
            size -= BATCH_SEPARATOR_BYTES
        current.append(item)
        current_bytes += size
    if current:
        result.append(current)
    return result
